"""The simulated Twilio side's log of the wire: what each caller sent and what it received.

Times are the callers' clock (``time.monotonic`` in the benches, seconds), the clock the
simulated upstream stamps its records with, so the two compare directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.audio.mulaw import BYTES_PER_MS
from bridge.core.marks import parse_mark_name
from bridge.sim.playback import ClearResult, TwilioPlayback


@dataclass(frozen=True, slots=True)
class WireEvent:
    t: float
    """Caller clock (s) at which the bridge's message was handled."""
    kind: Literal["media", "mark", "clear"]
    size: int = 0
    """Payload bytes (media)."""
    name: str = ""
    """Mark name (mark)."""


class WirePlayback(TwilioPlayback):
    """Twilio's playback model that also logs every bridge message it is fed, in order."""

    __slots__ = ("wire",)

    def __init__(self) -> None:
        super().__init__()
        self.wire: list[WireEvent] = []

    def push_media(self, payload: bytes, now: float) -> list[str]:
        self.wire.append(WireEvent(now, "media", size=len(payload)))
        return super().push_media(payload, now)

    def push_mark(self, name: str, now: float) -> list[str]:
        self.wire.append(WireEvent(now, "mark", name=name))
        return super().push_mark(name, now)

    def clear(self, now: float) -> ClearResult:
        self.wire.append(WireEvent(now, "clear"))
        return super().clear(now)

    def attributed_media(self) -> list[tuple[float, int, str | None]]:
        """``(arrival, bytes, item_id)`` of every media message; the item comes from the
        first mark that follows it (``None`` if no mark followed)."""
        out: list[tuple[float, int, str | None]] = []
        pending: list[WireEvent] = []
        for event in self.wire:
            if event.kind == "media":
                pending.append(event)
            elif event.kind == "mark":
                parsed = parse_mark_name(event.name)
                item = parsed.item_id if parsed is not None else None
                out += [(m.t, m.size, item) for m in pending]
                pending = []
        out += [(m.t, m.size, None) for m in pending]
        return out


@dataclass(frozen=True, slots=True)
class SentFrame:
    """One caller ``media`` frame as it left the caller."""

    t: float
    """Caller clock (s) right before it was written."""
    timestamp_ms: int
    """Its Twilio ``media.timestamp``: where its audio starts on the caller's clock."""
    payload: bytes
    """μ-law, 8 bytes per ms."""

    @property
    def end_ms(self) -> float:
        """Where its audio ends on the caller's clock (ms)."""
        return self.timestamp_ms + len(self.payload) / BYTES_PER_MS


class SentMedia:
    """Collects a caller's frames: pass :meth:`record` as ``CallerOptions.on_media_sent``."""

    __slots__ = ("frames",)

    def __init__(self) -> None:
        self.frames: list[SentFrame] = []

    def record(self, t: float, timestamp_ms: int, payload: bytes) -> None:
        self.frames.append(SentFrame(t, timestamp_ms, payload))
