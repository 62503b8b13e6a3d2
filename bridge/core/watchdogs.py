"""Timers on what the call owes the caller: each one a small clock-driven record, no I/O.

The call core owns one of each and asks them for the next deadline and for what is due at
a given time; it decides what to do about it. Times are Trio seconds.

* :class:`ReplyWatch`: the caller's turn ended and no reply audio has started. After
  ``timeout_s`` the model gets one nudge (a ``response.create``); ``hold_after_s`` later, if
  still nothing, the caller hears the hold phrase ("One moment, please"), once.
* :class:`ResponseWatch`: a response stopped streaming mid-way (no event of it for
  ``stall_s``): the upstream is treated as lost.
* :class:`MediaWatch`: Twilio stopped sending caller media while its socket stays open.
  After ``stall_s`` the stall is counted and logged; after ``timeout_s`` the call ends with
  the fallback (a stream that carries no audio is not a call).
* :class:`Outage`: the upstream is gone and the call is healing; after ``comfort_after_s``
  of silence at the caller, the hold phrase plays (once per outage), then, while it still
  heals, a soft cue after every further ``cue_quiet_s`` of silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bridge.core.ending import CallEnd


class ReplyDue(Enum):
    NUDGE = "nudge"
    HOLD_PHRASE = "hold_phrase"


@dataclass(slots=True)
class ReplyWatch:
    timeout_s: float
    hold_after_s: float
    owed_since: float | None = None
    nudged: bool = False
    held: bool = False

    def owe(self, now: float) -> None:
        """The caller's turn ended: a reply is owed from ``now``."""
        self.owed_since, self.nudged, self.held = now, False, False

    def settle(self) -> None:
        """Reply audio started, or the caller speaks again: nothing is owed."""
        self.owed_since = None

    def deadline(self) -> float | None:
        if self.owed_since is None or self.held:
            return None
        if not self.nudged:
            return self.owed_since + self.timeout_s
        return self.owed_since + self.timeout_s + self.hold_after_s

    def due(self, now: float) -> ReplyDue | None:
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        if not self.nudged:
            self.nudged = True
            return ReplyDue.NUDGE
        self.held = True
        return ReplyDue.HOLD_PHRASE


@dataclass(slots=True)
class ResponseWatch:
    stall_s: float
    response_id: str | None = None
    last_event_at: float = 0.0

    def active(self, response_id: str, now: float) -> None:
        self.response_id, self.last_event_at = response_id, now

    def event(self, response_id: str, now: float) -> None:
        if response_id == self.response_id:
            self.last_event_at = now

    def done(self) -> None:
        self.response_id = None

    def deadline(self) -> float | None:
        return None if self.response_id is None else self.last_event_at + self.stall_s

    def stalled(self, now: float) -> bool:
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return False
        self.response_id = None
        return True


class MediaDue(Enum):
    STALL = "stall"
    TIMEOUT = "timeout"


@dataclass(slots=True)
class MediaWatch:
    stall_s: float
    timeout_s: float
    last_at: float
    stalled: bool = False
    timed_out: bool = False
    """The timeout fired (once: the call is ending)."""

    def frame(self, now: float) -> float | None:
        """A caller frame arrived; the stall's length in s if it ends one."""
        ended = now - self.last_at if self.stalled else None
        self.last_at, self.stalled = now, False
        return ended

    def deadline(self) -> float | None:
        if self.timed_out:
            return None
        return self.last_at + (self.timeout_s if self.stalled else self.stall_s)

    def due(self, now: float) -> MediaDue | None:
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        if not self.stalled:
            self.stalled = True
            return MediaDue.STALL
        self.timed_out = True
        return MediaDue.TIMEOUT


@dataclass(slots=True)
class Outage:
    lost_at: float
    reason: CallEnd
    mid_reply: bool
    """A response was being generated: the new session is asked to say so and go on."""
    cut_text: str
    """What the caller heard of the reply that was cut (for that instruction)."""
    comfort_at: float | None
    """When the next comfort audio plays if the call has not healed: ``comfort_after_s``
    after the caller's line fell silent (or a cue interval after the soft cue that already
    broke that silence, when the reply starved before the loss was found), then again after
    each cue has played (the core sets it); ``None`` while nothing is scheduled."""
    cues: int = 0
    """Comfort audio played in this outage: the hold phrase first, then the soft cue."""
    attempts: int = 0
    """Connections tried to heal it."""

    def comfort_due(self, now: float) -> bool:
        if self.comfort_at is None or now < self.comfort_at:
            return False
        self.comfort_at = None
        self.cues += 1
        return True
