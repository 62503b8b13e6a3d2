"""Glue between the call and the per-frame audio analysis of the audio-gate stage.

Holds the mapping between Trio time and the caller's clock (Twilio ``media.timestamp``,
ms since the stream started), which the echo guard needs to place our own outbound audio
on the same axis as the inbound frames.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config import BridgeConfig
from bridge.core import realtime as rt
from bridge.core.actions import Action
from bridge.core.call import CallCore
from bridge.core.playout import BYTES_PER_MS


@dataclass(frozen=True, slots=True)
class InboundFrame:
    payload: bytes
    """μ-law, 8 bytes/ms."""
    timestamp_ms: int


class GateStage:
    __slots__ = ("_caller_ms", "_caller_ms_at", "_core")

    def __init__(self, core: CallCore, config: BridgeConfig) -> None:
        self._core = core
        self._caller_ms = 0.0
        self._caller_ms_at: float | None = None

    def note_caller_time(self, timestamp_ms: int, now: float) -> None:
        self._caller_ms, self._caller_ms_at = float(timestamp_ms), now

    def caller_ms(self, at: float) -> float:
        """Caller-clock ms at Trio time ``at`` (extrapolated from the latest frame)."""
        if self._caller_ms_at is None:
            return 0.0
        return self._caller_ms + (at - self._caller_ms_at) * 1000.0

    def note_playout(self, payload: bytes, play_start_at: float) -> None:
        """AI audio handed to Twilio, expected to start playing at ``play_start_at``."""

    def note_playout_stopped(self, at: float) -> None:
        """Twilio ``clear`` written at ``at``: playout stops there."""

    def process(self, frame: InboundFrame, now: float) -> tuple[list[str], list[Action]]:
        """Append frames to send upstream (serialized), and core actions for this frame."""
        self._core.counters.frames_upstream += 1
        self._core.input_clock.on_appended(frame.timestamp_ms, len(frame.payload) / BYTES_PER_MS)
        return [rt.input_audio_append_text(frame.payload)], []
