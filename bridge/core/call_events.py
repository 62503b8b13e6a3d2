"""Call events for the application (``BRIDGE_EVENTS_URL``): typed, made by the core or the
call runner, delivered by :mod:`bridge.runtime.app_link`.

Each event is posted as one JSON object, signed like tool requests
(:mod:`bridge.core.appsign`)::

    {"type": "transcript", "seq": 7, "call_sid": "CA…", "stream_sid": "MZ…",
     "control_url": "http://10.0.0.7:8080/calls/CA…", "sent_at": 1767225600.123,
     "data": {"role": "ai", "item_id": "item_…", "text": "Your order ships", ...}}

``seq`` counts the call's events from 1 in the order they were made; a gap means events
were dropped (the queue was full or delivery failed after its retries): the application
can tell. ``data`` is the event's fields below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal


@dataclass(frozen=True, slots=True)
class CallStarted:
    TYPE: ClassVar[str] = "call.started"
    custom_parameters: Mapping[str, str]
    """The stream's ``<Parameter>`` values (``From``, ``To``, ``CallSid`` from the webhook)."""


@dataclass(frozen=True, slots=True)
class Transcript:
    """A final transcript: the caller's as transcribed, the AI's as *heard*."""

    TYPE: ClassVar[str] = "transcript"
    role: Literal["caller", "ai"]
    item_id: str
    text: str
    truncated: bool
    """AI only: the caller cut in; ``text`` keeps the same share of the words as of the
    item's audio the caller heard (``heard_ms`` of ``audio_ms``)."""
    heard_ms: int | None
    audio_ms: int | None


@dataclass(frozen=True, slots=True)
class BargeInHappened:
    TYPE: ClassVar[str] = "barge_in"
    trigger: str
    epoch: int
    """The call's barge-in epoch after this barge-in (tool requests carry the one they ran in)."""
    truncated: tuple[Mapping[str, int | str], ...]
    """``{"item_id", "heard_ms", "audio_ms"}`` of each AI item cut where the caller stopped it."""
    deleted: tuple[str, ...]
    """AI items the caller heard nothing of (removed from the conversation)."""


@dataclass(frozen=True, slots=True)
class ToolCalled:
    TYPE: ClassVar[str] = "tool.called"
    tool: str
    call_id: str
    kind: str
    """``url``, ``end_call`` or ``transfer_call``."""
    arguments: Mapping[str, Any]
    epoch: int


@dataclass(frozen=True, slots=True)
class CallEnded:
    TYPE: ClassVar[str] = "call.ended"
    reason: str
    detail: str
    duration_s: float
    statistics: Mapping[str, int]
    """The call's counters, as in its ``CALL_END`` line."""


CallEvent = CallStarted | Transcript | BargeInHappened | ToolCalled | CallEnded


def event_data(event: CallEvent) -> dict[str, Any]:
    """The event's fields, as JSON-ready values (tuples become lists)."""
    return {f.name: _plain(getattr(event, f.name)) for f in dataclasses.fields(event)}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
