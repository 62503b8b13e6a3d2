"""Why a call ended: a closed set of reasons, each with a free-text detail.

Every call ends with exactly one :class:`CallEnd` (the first reason wins). The reason is a
value of :class:`EndReason`, so code decides on it with ``is``, never by parsing a string;
the detail carries what only a person needs (a close code, the server's error message).
``str(end)`` is what the ``CALL_END reason=...`` line shows, and ``end.reason.value`` is the
``reason`` label of ``bridge_calls_ended_total``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class EndReason(Enum):
    TWILIO_STOP = "twilio_stop"
    """Twilio sent ``stop``: the caller hung up or the application moved the call on."""
    END_CALL = "end_call"
    """The model called the ``end_call`` built-in; its goodbye was heard, then the call was
    hung up through REST and the stream closed."""
    TRANSFERRED = "transferred"
    """The model called ``transfer_call``; Twilio accepted the ``<Dial>`` redirect."""
    TWILIO_DISCONNECTED = "twilio_disconnected"
    """The Twilio WebSocket closed or dropped without a ``stop``."""
    TWILIO_DISCONNECTED_BEFORE_START = "twilio_disconnected_before_start"
    TWILIO_START_TIMEOUT = "twilio_start_timeout"
    TWILIO_MEDIA_TIMEOUT = "twilio_media_timeout"
    """Twilio's socket stayed open but no caller audio came for ``BRIDGE_MEDIA_TIMEOUT_S``."""
    TWILIO_MEDIA_FORMAT = "twilio_media_format_unsupported"
    """The stream's ``start`` announced audio other than μ-law 8000 Hz mono."""
    OPENAI_CLOSED = "openai_closed"
    OPENAI_HANDSHAKE_FAILED = "openai_handshake_failed"
    OPENAI_SESSION_TIMEOUT = "openai_session_timeout"
    OPENAI_STALL = "openai_stall"
    """A ping went unanswered: the peer is gone or wedged, so closing it gets no grace."""
    OPENAI_RESPONSE_STALL = "openai_response_stall"
    """A response stopped streaming mid-way: the session is given up like a lost one."""
    OPENAI_GARBAGE = "openai_garbage"
    """The session sent nothing but events that cannot be parsed, many in a row."""
    OPENAI_LOST = "openai_lost"
    """The upstream was lost and the reconnect budget is spent: the fallback plays."""
    SESSION_UPDATE_REJECTED = "session_update_rejected"
    SESSION_FORMAT_MISMATCH = "session_format_mismatch"
    SESSION_FORMAT_CHANGED = "session_format_changed"
    UPSTREAM_FATAL_ERROR = "upstream_fatal_error"
    MAX_CALL_DURATION = "max_call_duration"
    SERVER_SHUTDOWN = "server_shutdown"
    INTERNAL_ERROR = "internal_error"
    """A bug in the bridge; its traceback is logged once as ``CALL_ERROR``."""
    CANCELLED = "cancelled"
    """The call's task was cancelled from outside for no reason of its own."""

    @property
    def is_normal(self) -> bool:
        """Twilio ended the stream itself, or the call was ended or moved on on purpose
        (``end_call``, ``transfer_call``: their REST request is already done): close with
        1000, log at INFO, no fallback REST hang-up (it could cut a transfer)."""
        return self in (EndReason.TWILIO_STOP, EndReason.END_CALL, EndReason.TRANSFERRED)

    @property
    def upstream_can_heal(self) -> bool:
        """A lost session of this kind is replaced by a new one (within the budget)."""
        return self in (
            EndReason.OPENAI_CLOSED,
            EndReason.OPENAI_STALL,
            EndReason.OPENAI_RESPONSE_STALL,
            EndReason.OPENAI_HANDSHAKE_FAILED,
            EndReason.OPENAI_SESSION_TIMEOUT,
            EndReason.OPENAI_GARBAGE,
        )

    @property
    def upstream_can_take_audio(self) -> bool:
        """The call ends for a reason on the caller's side (or the bridge's): the upstream
        session is still fine, so caller audio not yet sent can be, before it is closed."""
        return self in (
            EndReason.TWILIO_STOP,
            EndReason.END_CALL,
            EndReason.TRANSFERRED,
            EndReason.TWILIO_DISCONNECTED,
            EndReason.MAX_CALL_DURATION,
            EndReason.SERVER_SHUTDOWN,
            EndReason.CANCELLED,
        )

    @property
    def upstream_is_stalled(self) -> bool:
        """The upstream peer stopped answering: do not wait for its close handshake."""
        return self in (EndReason.OPENAI_STALL, EndReason.OPENAI_RESPONSE_STALL)


@dataclass(frozen=True, slots=True)
class CallEnd:
    reason: EndReason
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.reason.value} {self.detail}" if self.detail else self.reason.value
