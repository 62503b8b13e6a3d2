"""Mapping between the caller's clock and the upstream input-audio clock.

Twilio stamps each inbound frame with ``media.timestamp`` (ms since the stream started).
The Realtime API reports ``audio_start_ms``/``audio_end_ms`` on its input-audio clock: ms
of audio appended this session. The gate replaces noise with silence instead of dropping
it, so the two clocks advance together; they differ by an offset that changes only when
frames never reach the upstream (before the session is ready, or dropped on overflow).
Each such break starts a new segment.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class _Segment:
    upstream_start_ms: float
    twilio_start_ms: float


@dataclass(slots=True)
class InputClock:
    max_segments: int = 64
    appended_ms: float = 0.0
    """Total audio appended upstream this session, ms (the upstream input-audio clock)."""
    _segments: deque[_Segment] = field(default_factory=deque)
    _expected_twilio_ms: float | None = None

    def on_appended(self, twilio_ms: float, duration_ms: float) -> None:
        """A frame stamped ``twilio_ms`` of ``duration_ms`` was appended upstream, in order."""
        if self._expected_twilio_ms is None or abs(twilio_ms - self._expected_twilio_ms) > 0.5:
            self._segments.append(_Segment(self.appended_ms, twilio_ms))
            while len(self._segments) > self.max_segments:
                self._segments.popleft()
        self.appended_ms += duration_ms
        self._expected_twilio_ms = twilio_ms + duration_ms

    def to_twilio_ms(self, upstream_ms: float) -> float | None:
        """Caller-clock ms of an upstream position, or ``None`` if it is not known (yet)."""
        for segment in reversed(self._segments):
            if upstream_ms >= segment.upstream_start_ms:
                return segment.twilio_start_ms + (upstream_ms - segment.upstream_start_ms)
        return None
