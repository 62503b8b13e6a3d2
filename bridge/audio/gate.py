"""Noise gate toward the model: noise frames become μ-law silence, never disappear.

**Clock rule.** Every input frame is emitted exactly once, in order, either as itself or
as the same number of bytes of μ-law silence (``0xFF``). The upstream input-audio clock
(ms of audio appended) therefore advances exactly like the caller's stream, and every
``audio_start_ms``/``audio_end_ms`` the server reports maps 1:1 back to Twilio time.

**Prefix hold.** While the gate is closed, frames wait in a hold of at most ``prefix_ms``
(8 bytes per ms). When a frame arrives with the gate open (the caller's voice is a
candidate, sustained, in hangover, or a barge-in is active), the whole hold is released
*as real audio* together with that frame, so the first syllable, whose attack is below
the threshold, reaches the model. Frames pushed out of a full hold while still closed are
released as silence. Once open, there is no added latency: each frame is released as it
arrives. The hold costs up to ``prefix_ms`` of delay, but only on frames that turn out to
be silence. With ``enabled=False`` every frame passes through at once and nothing is held.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from bridge.audio import mulaw

_SILENCE = bytes([mulaw.SILENCE_BYTE])


def silence_like(payload: bytes) -> bytes:
    """μ-law digital silence with the length of ``payload``."""
    return _SILENCE * len(payload)


@dataclass(slots=True)
class Gate:
    """The gate's hold and open/closed state; see the module docstring for the rules."""

    prefix_ms: float = 100.0
    enabled: bool = True
    held: deque[bytes] = field(default_factory=deque)
    held_bytes: int = 0

    def push(self, payload: bytes, *, open_now: bool) -> tuple[bytes, ...]:
        """Take one input frame; return the frames to send upstream now, oldest first.

        ``open_now`` is the decision for this frame. The result is empty while a closed
        gate is still filling its hold.
        """
        if not self.enabled:
            return (payload,)
        if open_now:
            if not self.held:
                return (payload,)
            released = (*self.held, payload)
            self.held.clear()
            self.held_bytes = 0
            return released
        self.held.append(payload)
        self.held_bytes += len(payload)
        limit = self.prefix_ms * mulaw.BYTES_PER_MS
        aged: list[bytes] = []
        while self.held_bytes > limit:
            oldest = self.held.popleft()
            self.held_bytes -= len(oldest)
            aged.append(silence_like(oldest))
        return tuple(aged)

    def flush(self) -> tuple[bytes, ...]:
        """End of stream: release the hold as silence (it was never followed by voice)."""
        released = tuple(silence_like(frame) for frame in self.held)
        self.held.clear()
        self.held_bytes = 0
        return released
