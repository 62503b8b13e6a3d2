"""The audio-gate/VAD stage of a call, sans-IO: one decision per inbound frame, used twice.

Each caller frame goes through :class:`bridge.audio.analyzer.InboundAnalyzer` once. Its
judgement (level, learned noise floor, voice, echo-aware onset) drives both uses:

* **the gate**: frames judged noise reach the model as μ-law silence of the same length,
  never dropped, so the upstream input-audio clock stays equal to the caller's and every
  ``audio_start_ms``/``audio_end_ms`` maps back exactly (each released frame keeps its
  caller timestamp for :class:`bridge.core.inputclock.InputClock`).
  While ``barge_in_active`` is set, and within the prefix window before detected voice,
  every frame passes as is. ``BRIDGE_AUDIO_GATE=off`` passes everything untouched.
* **the local fast barge-in**: an onset not explained by our own outbound audio (the echo
  guard knows what was played and when) is reported in :attr:`GateResult.onset`; the core
  decides what it means.

It also holds the mapping between Trio time and the caller's clock (Twilio
``media.timestamp``, ms since the stream started), which the echo guard needs to place
our outbound audio on the inbound frames' axis. The stage is owned by
:class:`bridge.core.call.CallCore`, which feeds it and counts in its counters.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from bridge.audio import mulaw
from bridge.audio.analyzer import AnalyzerSettings, InboundAnalyzer
from bridge.core.actions import Log
from bridge.core.inboundgap import InboundGapFiller
from bridge.core.stats import CallCounters
from bridge.core.twilio import Media


# A NamedTuple rather than a frozen dataclass: one is built per 20 ms frame, and a frozen
# dataclass's generated __init__ costs about 2 µs where a NamedTuple's costs 0.3 µs.
class Released(NamedTuple):
    audio: bytes
    """μ-law, the frame itself or the same length of silence."""
    timestamp_ms: int
    """Where it sits on the caller's clock (Twilio ``media.timestamp``)."""


@dataclass(slots=True)
class GateResult:
    """What one caller frame produced."""

    released: list[Released] = field(default_factory=list)
    """Audio to append upstream now, in order (frames and stand-in silence)."""
    onset: bool = False
    """The caller started speaking, and it is not our own echo."""
    logs: list[Log] = field(default_factory=list)


MAX_PLAYOUT_NOTES = 64
"""AI messages noted for the echo guard before a caller frame takes them (6.4 s of 100 ms
messages); past it they are taken at once, so a stalled inbound stream holds no backlog."""

TURN_END_MARGIN_MS = 300
"""Added to the server's ``silence_duration_ms`` for the gate's turn-end window: the server
may place the end of speech later than the analyzer's last loud block (a soft tail, its own
threshold), and audio it still times must not wait in the hold."""


class GateStage:
    __slots__ = (
        "_analyzer",
        "_caller_ms",
        "_caller_ms_at",
        "_counters",
        "_gaps",
        "_pending",
        "_playout",
        "floor_dbfs",
        "voice",
    )

    def __init__(
        self, counters: CallCounters, *, gate_enabled: bool, server_silence_ms: int
    ) -> None:
        """``server_silence_ms``: the server VAD's ``silence_duration_ms``."""
        self._counters = counters
        self._analyzer = InboundAnalyzer(
            AnalyzerSettings(
                gate_enabled=gate_enabled,
                turn_window_ms=server_silence_ms + TURN_END_MARGIN_MS,
            )
        )
        self._gaps = InboundGapFiller()
        self._pending: deque[Media] = deque()
        """Frames given to the analyzer and not yet released (at most the prefix window)."""
        self._playout: list[tuple[bytes, float]] = []
        """AI audio handed to Twilio and not yet given to the echo guard: (μ-law, caller-clock
        ms it starts playing)."""
        self._caller_ms = 0.0
        self._caller_ms_at: float | None = None
        self.voice = False
        """The analyzer's sustained voice decision after the latest frame."""
        self.floor_dbfs: float | None = None
        """The caller's learned noise floor after the latest frame, dBFS."""

    @property
    def closed(self) -> bool:
        """The gate is holding: the caller has been quiet for longer than the turn-end
        window and no barge-in is active, so no turn is timing on the audio it releases."""
        return self._analyzer.gate.closed

    def note_caller_time(self, timestamp_ms: int, now: float) -> None:
        self._caller_ms, self._caller_ms_at = float(timestamp_ms), now

    def caller_ms(self, at: float) -> float:
        """Caller-clock ms at Trio time ``at`` (extrapolated from the latest frame)."""
        if self._caller_ms_at is None:
            return 0.0
        return self._caller_ms + (at - self._caller_ms_at) * 1000.0

    def note_playout(self, payload: bytes, play_start_at: float) -> None:
        """AI audio handed to Twilio, expected to start playing at Trio time ``play_start_at``.

        Only its place on the caller's clock is worked out now; the echo guard takes it
        before it judges the next caller frame (the first that can carry its echo), so its
        numpy work is off the path from the model's first delta to Twilio."""
        self._playout.append((payload, self.caller_ms(play_start_at)))
        if len(self._playout) >= MAX_PLAYOUT_NOTES:
            self._take_playout()  # no caller frame for a while: do not let them pile up

    def note_playout_stopped(self, at: float) -> None:
        """Twilio ``clear`` written at Trio time ``at``: our playout, and its echo, stop."""
        self._take_playout()
        self._analyzer.note_outbound_cleared(self.caller_ms(at))

    def _take_playout(self) -> None:
        """Give the echo guard the AI audio noted since it last judged a frame, in order."""
        for payload, play_start_ms in self._playout:
            self._analyzer.note_outbound(payload, play_start_ms)
        self._playout.clear()

    def process(self, frame: Media, *, barge_in_active: bool, now: float) -> GateResult:
        """One caller frame, taken at ``now``; caller audio missing before it (see
        :mod:`bridge.core.inboundgap`) is released first, as silence."""
        self._take_playout()
        result = GateResult()
        gap = self._gaps.before(frame.timestamp_ms, len(frame.payload), now)
        if gap is not None:
            self._counters.inbound_gaps += 1
            self._counters.inbound_gap_filled_ms += gap.filled_ms
            result.logs.append(
                Log(
                    "DEBUG",
                    "INBOUND_GAP",
                    f"{gap.missing_ms} ms of caller audio missing at {gap.at_ms} ms: "
                    f"{gap.filled_ms} ms of silence appended",
                    {"missing_ms": gap.missing_ms, "filled_ms": gap.filled_ms},
                )
            )
            for filler in gap.frames:
                silence = mulaw.silence(filler.duration_ms)
                self._pending.append(Media(silence, filler.timestamp_ms))
                self._release(self._analyzer.fill(silence, barge_in_active=barge_in_active), result)
        self._pending.append(frame)
        judged = self._analyzer.process(
            frame.payload, frame.timestamp_ms, barge_in_active=barge_in_active
        )
        result.onset = judged.onset
        self.floor_dbfs = judged.floor_dbfs
        if judged.voice != self.voice:
            # Transitions only: per-frame decisions never reach the log.
            self.voice = judged.voice
            result.logs.append(
                Log(
                    "DEBUG",
                    "VAD",
                    f"voice {'on' if judged.voice else 'off'} at {frame.timestamp_ms} ms: "
                    f"level {judged.level_dbfs:.1f} dBFS, floor {judged.floor_dbfs:.1f} dBFS"
                    + (", onset (not echo)" if judged.onset else ""),
                    {"level_dbfs": judged.level_dbfs, "floor_dbfs": judged.floor_dbfs},
                )
            )
        self._release(judged.release, result)
        return result

    def flush(self) -> list[Released]:
        """End of the caller's stream: what the hold still keeps, as silence (it was never
        followed by voice), accounted like any release."""
        result = GateResult()
        self._release(self._analyzer.flush(), result)
        return result.released

    def _release(self, audio_frames: tuple[bytes, ...], result: GateResult) -> None:
        """Account for frames the analyzer released (oldest pending first) and add them to
        ``result``."""
        counters = self._counters
        for audio in audio_frames:
            source = self._pending.popleft()
            if audio != source.payload:
                counters.frames_gated += 1
            result.released.append(Released(audio, source.timestamp_ms))
