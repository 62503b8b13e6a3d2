"""Work the core hands to the call's application link (HTTP to the app, Twilio REST).

The core decides; :class:`bridge.runtime.app_link.AppLink` does the I/O in its own task of
the call nursery, never in the task that handed the work over (the OpenAI reader must not
wait on an application). Every value here travels inside a
:class:`bridge.core.actions.ToApp` action, which any task may execute: handing work over
is a non-blocking put on the link's bounded channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.core.call_events import CallEvent


@dataclass(frozen=True, slots=True)
class RunTool:
    """POST the call to the tool's URL; the outcome comes back through
    :meth:`bridge.core.call.CallCore.on_tool_result`."""

    call_id: str
    tool: str
    url: str
    timeout_s: float
    arguments: str
    """The model's arguments: JSON text of an object (checked by the core)."""
    epoch: int
    """The call's barge-in epoch when the model made the call."""


@dataclass(frozen=True, slots=True)
class CancelTool:
    """Tell the application a call is cancelled (the caller barged in); its result, if it
    still comes, is dropped by the core."""

    call_id: str
    tool: str
    url: str
    reason: str


@dataclass(frozen=True, slots=True)
class RunExit:
    """The caller has heard the AI's last words: end the call (REST hang-up, then close the
    stream) or redirect it with ``<Dial>``; the outcome comes back through
    :meth:`bridge.core.call.CallCore.on_exit_result`."""

    call_id: str
    kind: Literal["end_call", "transfer_call"]
    destination: str | None
    """``transfer_call``: the E.164 number or ``sip:`` URI to dial."""


@dataclass(frozen=True, slots=True)
class EmitEvent:
    """Queue a call event for the application (dropped and counted if the queue is full)."""

    event: CallEvent


AppWork = RunTool | CancelTool | RunExit | EmitEvent
