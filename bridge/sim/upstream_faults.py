"""Fault injection for the simulated Realtime upstream: what can go wrong, and when.

A :class:`Fault` is applied by the session adapter either at ``at_ms`` (ms of the sim's clock
after the session opened; faults of the options' :class:`FaultPlan` apply to every session) or
at once when given at run time through a session handle.

CLI form (:func:`parse_fault`, :func:`parse_fault_plan` for a comma-separated list)::

    close1011@3000     close the socket with code 1011 at 3000 ms (``close@…`` = 1011)
    close1001@5000     1001 carries the service's 60-minute-cap reason
    malformed@2000     a text frame that is not JSON
    notype@2000        a JSON object without ``type``
    unknown@1000       a server event of a type no client knows
    error@1500         an ``error`` event (``server_error``); ``error:CODE@1500`` picks the code
    stall@2500         stop sending and reading until the server stops
    stall@2500+1000    the same for 1000 ms
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class FaultKind(StrEnum):
    CLOSE = "close"
    MALFORMED = "malformed"
    NO_TYPE = "notype"
    UNKNOWN_EVENT = "unknown"
    ERROR = "error"
    STALL = "stall"
    FRAMES = "frames"
    """Text frames sent as given (tests: fuzzed server events). Not a CLI fault."""


CLOSE_REASONS: Final = {
    1001: "Your session hit the maximum duration of 60 minutes.",
    1011: "Internal server error",
}
SERVER_ERROR_MESSAGE: Final = (
    "The server had an error while processing your request. Sorry about that!"
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault. Fields other than ``kind`` and ``at_ms`` apply to some kinds only."""

    kind: FaultKind
    at_ms: int | None = None
    """ms after the session opened; ``None`` for a fault given at run time (applied at once)."""
    close_code: int = 1011
    close_reason: str | None = None
    """Close reason; ``None`` uses :data:`CLOSE_REASONS` for the code."""
    error_code: str | None = "server_error"
    error_message: str = SERVER_ERROR_MESSAGE
    duration_ms: int | None = None
    """Stall length in ms; ``None`` stalls until the server stops (or another command)."""
    frames: tuple[str, ...] = ()
    """The text frames of a ``FRAMES`` fault, in order."""

    def reason(self) -> str:
        if self.close_reason is not None:
            return self.close_reason
        return CLOSE_REASONS.get(self.close_code, "")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Faults applied to every new session, at their ``at_ms``."""

    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        if any(f.at_ms is None or f.at_ms < 0 for f in self.faults):
            raise ValueError("every planned fault needs at_ms >= 0")


_SPEC = re.compile(
    r"^(?P<kind>close|malformed|notype|unknown|error|stall)"
    r"(?P<code>\d{4})?(?::(?P<err>[a-z_]+))?@(?P<at>\d+)(?:\+(?P<dur>\d+))?$"
)


def parse_fault(spec: str) -> Fault:
    """Parse one CLI fault spec (see the module docstring). Raises ``ValueError`` when invalid."""
    match = _SPEC.match(spec.strip())
    if match is None:
        raise ValueError(f"invalid fault spec {spec!r}: expected e.g. close1011@3000, stall@2500")
    kind = FaultKind(match["kind"])
    code, err, dur = match["code"], match["err"], match["dur"]
    if code is not None and kind is not FaultKind.CLOSE:
        raise ValueError(f"invalid fault spec {spec!r}: only close takes a close code")
    if err is not None and kind is not FaultKind.ERROR:
        raise ValueError(f"invalid fault spec {spec!r}: only error takes an error code")
    if dur is not None and kind is not FaultKind.STALL:
        raise ValueError(f"invalid fault spec {spec!r}: only stall takes a duration")
    return Fault(
        kind=kind,
        at_ms=int(match["at"]),
        close_code=int(code) if code is not None else 1011,
        error_code=err if err is not None else "server_error",
        duration_ms=int(dur) if dur is not None else None,
    )


def parse_fault_plan(specs: str) -> FaultPlan:
    """A :class:`FaultPlan` from comma-separated specs; an empty string gives no faults."""
    return FaultPlan(tuple(parse_fault(s) for s in specs.split(",") if s.strip()))
