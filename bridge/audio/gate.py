"""Noise gate toward the model: noise frames become μ-law silence, never disappear.

**Clock rule.** Every input frame is emitted exactly once, in order, either as itself or
as the same number of bytes of μ-law silence (``0xFF``). The upstream input-audio clock
(ms of audio appended) therefore advances exactly like the caller's stream, and every
``audio_start_ms``/``audio_end_ms`` the server reports maps 1:1 back to Twilio time.

**When the gate is open** (each frame goes upstream as itself, at once, nothing held):

* the caller's voice is a candidate, sustained or in its hangover, or a barge-in is active
  (``open_now``);
* **the turn-end window**: for ``turn_window_ms`` after the caller last *spoke* (a frame
  with sustained voice and a loud block, ``speaking``). The server ends the caller's turn
  after ``silence_duration_ms`` of quiet input and times that quiet on the audio it is
  given, so the quiet after speech must reach it undelayed: the core sets the window to
  ``silence_duration_ms`` plus a margin (:data:`bridge.core.gate.TURN_END_MARGIN_MS`) for
  the server's own idea of where speech ended. In the window the quiet passes as it is,
  like the hangover it extends: soft speech tails below the threshold belong to the
  utterance, and a caller who goes on speaking keeps the first syllable.

**Prefix hold** (the gate is closed: long after the caller last spoke). Frames wait in a
hold of at most ``prefix_ms`` (8 bytes per ms). When a frame arrives with the gate open,
the whole hold is released *as real audio* together with that frame, so the first syllable
of a new turn, whose attack is below the threshold, reaches the model; the onset frame
itself is not delayed. Frames pushed out of a full hold while still closed are released as
silence. So the hold delays only audio that turned out to be line noise, at a time when no
turn is ending: while the caller is silent and the AI speaks, or before the caller has said
anything. :meth:`Gate.flush` releases it at the end of the stream. With ``enabled=False``
every frame passes through at once and nothing is held.
"""

from __future__ import annotations

import math
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
    turn_window_ms: float = 0.0
    """How long the gate stays open after the caller last spoke, ms (the turn-end window)."""
    enabled: bool = True
    held: deque[bytes] = field(default_factory=deque)
    held_bytes: int = 0
    quiet_ms: float = math.inf
    """ms of input since the caller last spoke (infinite before they ever did)."""
    closed: bool = False
    """The latest frame was held: no turn is starting or ending (see the module docstring)."""

    def push(self, payload: bytes, *, open_now: bool, speaking: bool = False) -> tuple[bytes, ...]:
        """Take one input frame; return the frames to send upstream now, oldest first.

        ``open_now`` is the decision for this frame; ``speaking`` says the caller is
        audibly speaking in it (it restarts the turn-end window). The result is empty while
        a closed gate is still filling its hold.
        """
        if not self.enabled:
            return (payload,)
        self.quiet_ms = 0.0 if speaking else self.quiet_ms + len(payload) / mulaw.BYTES_PER_MS
        self.closed = not (open_now or self.quiet_ms < self.turn_window_ms)
        if not self.closed:
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
