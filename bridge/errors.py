"""Every exception the bridge defines, and where each one stops.

Exception tree::

    BridgeError                 base of the bridge's own exceptions
    ├── CallEnded               a task of a call found a known reason to end it (not a bug);
    │                           carries the CallEnd for the CALL_END line; caught at the call
    │                           boundary (bridge.runtime.call.run_call), never above it.
    ├── UpstreamLost            the Realtime session is gone (closed, reset); raised by the
    │                           upstream adapter, caught by the call's upstream supervisor,
    │                           which heals the call with a new session (within the budget).
    └── UpstreamUnavailable     the Realtime WebSocket could not be opened (refused, rejected,
                                TLS, timeout, bad URL); ``retryable`` says whether another try
                                can help (an HTTP 401/403/404 cannot: the call ends).

    StateError (RuntimeError)   bridge.core.state: an impossible transition, i.e. a bug in the
                                core; like any other bug it ends one call as internal_error
                                and logs its traceback once (CALL_ERROR).

Configuration errors (bridge.config.ConfigError, a ValueError) never reach a call: they are
reported as one line at start-up and the process exits with status 2.

Anything else raised inside a call is a bug in the bridge: the call boundary logs it once
with its traceback, ends that call cleanly (fallback, hang-up, CALL_END reason=internal_error)
and the process keeps serving the others. ``trio.Cancelled`` is never caught.
"""

from __future__ import annotations

from bridge.core.ending import CallEnd


class BridgeError(Exception):
    """Base of the bridge's own exceptions."""


class CallEnded(BridgeError):
    """A task found a known reason to end the call (not a bug)."""

    def __init__(self, end: CallEnd) -> None:
        super().__init__(str(end))
        self.end = end


class UpstreamLost(BridgeError):
    """The Realtime session is gone; ``end`` says how (code, reason)."""

    def __init__(self, end: CallEnd) -> None:
        super().__init__(str(end))
        self.end = end


class UpstreamUnavailable(BridgeError):
    """The Realtime WebSocket could not be opened; the message says why."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
