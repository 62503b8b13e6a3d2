"""What the sans-IO call core asks its Trio adapters to do.

The core never performs I/O: each handler returns a list of these actions, executed in
order by the task that called it. They come in two kinds, and the handlers' return types
say which:

* :data:`LocalAction` needs no socket: every task can execute it. The handlers of the
  Twilio reader and the TX writer (:meth:`CallCore.on_twilio_event`,
  :meth:`CallCore.on_timer`) return only these, so mypy keeps socket work out of their
  frames. The reader runs the gate stage (:meth:`CallCore.on_caller_frames`) itself only
  when its writes cannot wait (``bridge.runtime.callio.CallIO.gate_can_run_inline``).
* :data:`UpstreamAction` writes to the Realtime socket (and, for a barge-in, to Twilio
  first); only tasks that own the upstream execute :data:`Action`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from bridge.core.app_work import AppWork
from bridge.core.ending import CallEnd
from bridge.core.realtime_client import ClientEvent
from bridge.core.twilio import Media

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


# NamedTuples rather than frozen dataclasses where one is built per frame or per poll: a
# frozen dataclass's generated __init__ costs about 1 µs per field more.
class SendUpstream(NamedTuple):
    """Send one client event to the Realtime API."""

    event: ClientEvent


@dataclass(frozen=True, slots=True)
class WakeTx:
    """The TX writer has something new to send (or to stop waiting for)."""


@dataclass(frozen=True, slots=True)
class EndCall:
    """End the whole call (the first end of a call wins)."""

    end: CallEnd


@dataclass(frozen=True, slots=True)
class DropUpstream:
    """Give up on the current upstream session (it stopped streaming): close it and heal as
    for any lost session."""

    end: CallEnd


@dataclass(frozen=True, slots=True)
class Log:
    """One log record with a readable tag (``BARGE_IN``, ``TX_FLUSH``, ...)."""

    level: LogLevel
    tag: str
    message: str
    fields: Mapping[str, object] = field(default_factory=dict)


class QueueCallerAudio(NamedTuple):
    """Hand one caller frame to the audio-gate stage (its channel's full-policy applies)."""

    media: Media


@dataclass(frozen=True, slots=True)
class Truncation:
    item_id: str
    audio_end_ms: int
    received_ms: int


@dataclass(frozen=True, slots=True)
class BargeIn:
    """A barge-in step list, executed in this order by the task that received the trigger.

    1. ``clear`` (when not ``None``) is written to Twilio: what matters is what has not been
       *played*, so it is sent even when all audio was already *sent*; then the adapter
       tells the core when it was written (:meth:`CallCore.on_clear_written`);
    2. the local TX queue was already flushed by the core (``flushed_*`` say how much);
    3. ``upstream`` events go out in order: ``response.cancel``, then one
       ``conversation.item.truncate`` or ``conversation.item.delete`` per assistant item;
    4. the adapter logs one ``BARGE_IN`` record with the timings of each step.
    """

    trigger: Literal["server", "local", "confirmed"]
    detected_at: float
    """Trio time (s) the trigger was received."""
    clear: str | None
    flushed_frames: int
    flushed_ms: int
    unplayed_at_twilio_ms: int
    """Audio already sent but not yet played at Twilio, dropped by the clear (estimate)."""
    upstream: tuple[ClientEvent, ...]
    cancelled_response_ids: tuple[str, ...]
    truncations: tuple[Truncation, ...]
    deleted_item_ids: tuple[str, ...]
    held: bool
    """Local fast path: unplayed audio is held, not dropped, until the server confirms."""
    caller_speech_ms: float | None
    """Where the server placed the interrupting speech (``audio_start_ms``, prefix padding
    included), on the caller's clock (Twilio media ms), when known."""


@dataclass(frozen=True, slots=True)
class ToApp:
    """Hand work to the call's application link (tool requests, exits, call events): a
    non-blocking put, so any task may execute it (see :mod:`bridge.core.app_work`)."""

    work: AppWork


LocalAction = WakeTx | Log | EndCall | QueueCallerAudio | DropUpstream | ToApp
UpstreamAction = SendUpstream | BargeIn
Action = LocalAction | UpstreamAction
