"""Silence for caller audio that never arrived, so the upstream clock keeps the caller's time.

Twilio stamps each inbound ``media`` frame with ``timestamp`` (ms since the stream started).
Whether those stamps can jump is not documented either way
(https://www.twilio.com/docs/voice/media-streams/websocket-messages); frames can also go
missing between the phone network and Twilio, or be dropped by our own inbound queue when it
is full. Without filling, the model's input-audio clock would then fall behind the caller's
for good, and the server's VAD would hear speech before the gap run straight into speech
after it, with no silence to end a turn on.

:class:`InboundGapFiller` decides, per frame, which silent frames stand in for the missing
audio before it. A gap counts when at least one whole frame is missing: timestamps that
wobble by less than a frame are left alone (filling them would push the upstream clock
ahead of the caller's). A timestamp that goes backwards resets the expectation and fills
nothing. A gap over ``max_fill_ms`` is filled up to that cap only; the rest stays a break
in the clock, which :class:`bridge.core.inputclock.InputClock` maps as a new segment.
The filler says where the silence goes and how long each frame is, in frames the length
of the frame that follows the gap; the gate stage appends that much μ-law silence.

The timestamps are the peer's word, and silence sent upstream is billed audio, so the
filler is also bounded by wall time: over a call, it never fills more than the time since
the first frame arrived plus :data:`FILL_AHEAD_MS`. Frames lost on the way are missing
for as long as they took to not arrive, so real losses always fit; timestamps that race
ahead (100 frames stamped 10 s apart in 2 s) get at most that much silence, not 549 s.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.playout import BYTES_PER_MS

DEFAULT_MAX_FILL_MS = 10_000
"""The longest gap filled, ms. OpenAI's own Twilio transport uses the same cap."""
FILL_AHEAD_MS = 1000
"""Silence filled over a call stays within the wall time since its first frame plus this
(the slack for a gap found early in the call, when little wall time has passed)."""


@dataclass(frozen=True, slots=True)
class FillFrame:
    """One frame of stand-in silence."""

    timestamp_ms: int
    """Where it sits on the caller's clock, ms."""
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Gap:
    """The fill decided before one frame."""

    at_ms: int
    """Caller-clock ms where audio stopped arriving."""
    missing_ms: int
    """Length of the gap, ms."""
    frames: tuple[FillFrame, ...]
    """The silence that stands in for it (up to the cap), in order."""

    @property
    def filled_ms(self) -> int:
        return sum(f.duration_ms for f in self.frames)


class InboundGapFiller:
    """Per call; fed every inbound frame's timestamp and length, in arrival order."""

    __slots__ = ("_expected_ms", "_filled_ms", "_first_at", "max_fill_ms")

    def __init__(self, max_fill_ms: int = DEFAULT_MAX_FILL_MS) -> None:
        if max_fill_ms < 0:
            raise ValueError("max_fill_ms must be >= 0")
        self.max_fill_ms = max_fill_ms
        self._expected_ms: int | None = None
        """Where the next frame starts if none is missing (None before the first frame)."""
        self._first_at: float | None = None
        """When the first frame came, s (the wall-time budget counts from there)."""
        self._filled_ms = 0

    def before(self, timestamp_ms: int, payload_bytes: int, now: float) -> Gap | None:
        """The silence to append upstream before a frame stamped ``timestamp_ms`` of
        ``payload_bytes`` bytes, taken at ``now`` (s), or ``None`` if nothing is missing.
        A gap beyond the budget comes back with less silence than missing, or none."""
        if self._first_at is None:
            self._first_at = now
        frame_ms = payload_bytes // BYTES_PER_MS
        expected = self._expected_ms
        self._expected_ms = timestamp_ms + frame_ms
        if expected is None or frame_ms <= 0:
            return None
        missing = timestamp_ms - expected
        if missing < frame_ms:
            return None
        budget_ms = int((now - self._first_at) * 1000) + FILL_AHEAD_MS - self._filled_ms
        fill_ms = max(0, min(missing, self.max_fill_ms, budget_ms))
        self._filled_ms += fill_ms
        frames = []
        at = expected
        while at < expected + fill_ms:
            length = min(frame_ms, expected + fill_ms - at)
            frames.append(FillFrame(at, length))
            at += length
        return Gap(expected, missing, tuple(frames))
