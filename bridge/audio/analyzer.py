"""One decision per inbound frame: level, noise floor, voice, fast-path onset, gate.

:class:`InboundAnalyzer` is the sans-IO façade the Trio gate stage calls once per Twilio
media frame (μ-law, 8 bytes per ms, any length; ``t_ms`` is the frame's media timestamp).
Each frame is judged in 10 ms blocks, and every consumer reads the same judgement:

* ``candidate``: some block is at least ``margin_db`` above the learned noise floor
  (:class:`bridge.audio.vad.NoiseFloor`) and at least ``min_voice_dbfs``, and the frame
  is not a DTMF dual tone.
* ``voice``: candidates sustained for ``min_onset_ms``, held through ``hangover_ms``
  (:class:`bridge.audio.vad.Sustain`).
* ``onset``: the same rule applied to the *residual*, the block power minus the echo bound
  of :class:`bridge.audio.echo.EchoGuard`. Its rising edge is the fast barge-in trigger;
  echo of our own audio cannot produce it. With no outbound audio in the last
  ``echo_max_delay_ms`` the residual equals the level, and ``onset`` is exactly the
  rising edge of ``voice``.
* ``release``: what goes upstream, from :class:`bridge.audio.gate.Gate`. The gate opens on
  ``candidate``, ``voice`` (so it stays open through the hangover) or ``barge_in_active``.
  It never opens on the echo-aware residual: the server does its own echo handling, and the
  gate's job is only to keep line noise out.

Defaults were chosen with ``python -m bench.vad`` (synthetic corpus, through μ-law); the
measurements behind each are in :class:`AnalyzerSettings`.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from bridge.audio import level, mulaw
from bridge.audio.echo import BIN_MS, EchoGuard
from bridge.audio.gate import Gate
from bridge.audio.vad import VOICING_SPAN, NoiseFloor, Sustain, is_dual_tone, voicing


@dataclass(frozen=True, slots=True)
class AnalyzerSettings:
    """Tuning of :class:`InboundAnalyzer`. Levels dBFS, durations ms.

    The figures quoted come from ``python -m bench.vad`` (each condition 30 s, everything
    through μ-law; the sweep moves one setting at a time around these defaults).

    Raises:
        ValueError: on construction, if a duration or margin is negative, ``min_onset_ms``
            or ``floor_fall_tau_ms`` is not positive, or ``echo_max_delay_ms`` is not a
            multiple of 10 ms.
    """

    gate_enabled: bool = True
    """False: every frame goes upstream untouched and at once (no hold, no silence)."""
    prefix_ms: float = 100.0
    """Audio held while the gate is closed, released as real audio when a candidate
    arrives. The first candidate block comes 13-33 ms (p50) after the true onset at
    SNR >= 10 dB, so 100 ms covers the attack with room: 100 % of the caller's voiced
    frames reached upstream as audio at SNR >= 10 dB, 96-99 % at 5 dB."""
    margin_db: float = 6.0
    """A block is a voice candidate this far above the noise floor. On -45 dBFS noise
    whose level wobbles by ±4 dB, 3 dB gave 14 false onsets in 30 s, 4.5 dB gave 3, and
    6 dB none. 6 dB still detects every onset at 5 dB SNR and misses 23 of 24 at 0 dB SNR;
    7.5 dB misses 2 more below 10 dB SNR and moves the p95 delay from 129 to 134 ms."""
    min_onset_ms: float = 60.0
    """Candidates must run this long without a break before voice (and the onset) is
    declared. It is what rejects clicks and knocks: with 1-40 ms transients at -20..-10 dBFS
    (about 30 in 30 s), 20 ms gave 22 false onsets, 40 ms 10, 50 ms 4 and 60 ms none.
    Each step of 20 ms adds 20 ms to every detection: p95 delay at SNR >= 10 dB was 89,
    109 and 129 ms at 20, 40 and 60 ms. The delay is min_onset_ms, plus the attack up to
    the threshold, plus up to one frame (the event is known at the end of the frame)."""
    voiced_onset: bool = True
    """Also declare voice (and the onset) on a single *voiced start* frame (see
    ``voiced_margin_db``) instead of waiting for ``min_onset_ms`` of energy. False: only the
    energy run counts."""
    voiced_margin_db: float = 3.0
    """A frame can be a voiced start if its mean power is this far above the noise floor
    (and at least ``min_voice_dbfs``), the latest 20 ms correlate at a pitch period by
    ``voicing_threshold``, fill the window and do not decay
    (:meth:`bridge.audio.vad.Voicing.is_voiced_start`)."""
    voicing_threshold: float = 0.5
    """Least normalized autocorrelation of a voiced start."""
    voiced_start_margin_db: float = 2.0
    """The first pitch period of the 20 ms window must be this far above the noise floor."""
    voiced_max_decay_db: float = 2.0
    """The last pitch period may be at most this far under the loudest period-long span."""
    hangover_ms: float = 300.0
    """Voice stays declared (and the gate open) this long after the last candidate block.
    Word gaps (60-180 ms, plus the syllable edges below the threshold) chop speech with
    less: re-onsets inside utterances at SNR >= 10 dB were 67 at 100 ms, 13 at 200 ms,
    and 0 at 300 ms. Cost: about 240 ms of noise passed after each utterance."""
    min_voice_dbfs: float = -60.0
    """Absolute minimum level of a candidate, so a digitally silent line (floor -100 dBFS)
    does not turn μ-law quantisation blips into voice. It sits 10 dB under the quietest
    voice the corpus must detect (-50 dBFS: 10 dB SNR over -60 dBFS noise), and 30-40 dB
    under usual telephone speech levels (-20 to -30 dBFS)."""
    reject_tones: bool = True
    """DTMF dual tones are never candidates (see :func:`bridge.audio.vad.is_dual_tone`).
    Without the test, the 3 × 30 s of key sequences gave 30 false onsets; with it, none."""
    initial_floor_dbfs: float = -35.0
    """Start high. The floor falls to the line's level in about 150 ms but rises slowly,
    so a start below the line's noise would read that noise as voice for seconds."""
    floor_fall_tau_ms: float = 40.0
    """Fast enough to reach the dips between words (60 ms or more) within a gap."""
    floor_rise_db_per_s: float = 3.0
    """1.5 dB/s let the ±4 dB wobble through once; 6 dB/s lost one more onset at 5 dB SNR
    (long utterances lift the floor). A noise step of D dB above the margin reads as
    voice for about D/3 seconds."""
    floor_min_dbfs: float = level.SILENCE_DBFS
    floor_max_dbfs: float = -20.0
    """No line is noisier than telephone speech: this caps the floor below speech level."""
    echo_guard: bool = True
    """False: the onset ignores outbound audio (it is then the rising edge of ``voice``).
    Without the guard, echo alone gave 43 false onsets in 9 × 30 s, and 40 of 40 caller
    onsets over echo were lost (the echo keeps ``voice`` up, so there is no rising edge)."""
    echo_max_delay_ms: int = 400
    """Longest echo path modelled (acoustic plus network), a multiple of 10 ms."""
    echo_margin_db: float = 6.0
    """Safety factor on the estimated echo bound. Over echo at 40/120/250 ms and -6/-10/-20
    dB, 1.5 dB gave 110 false onsets, 3 dB gave 4 (plus 4 in double talk), 6 dB none. More
    margin hides the caller: the p95 onset delay in double talk was 143, 180 and 945 ms at
    3, 6 and 9 dB (no caller onset missed at 6 dB)."""
    echo_prior_erl_db: float = 10.0
    """Echo return loss assumed at the worst-case delay until the first estimate, which
    lands 0.8-1.0 s after the AI first speaks in a call (bench echo conditions; see
    :class:`bridge.audio.echo.EchoGuard`)."""

    def __post_init__(self) -> None:
        for name in (
            "prefix_ms",
            "margin_db",
            "hangover_ms",
            "echo_margin_db",
            "voiced_margin_db",
            "voiced_max_decay_db",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.min_onset_ms <= 0 or self.floor_fall_tau_ms <= 0:
            raise ValueError("min_onset_ms and floor_fall_tau_ms must be > 0")
        if self.echo_max_delay_ms < 0 or self.echo_max_delay_ms % BIN_MS:
            raise ValueError(f"echo_max_delay_ms must be a multiple of {BIN_MS} ms")


@dataclass(frozen=True, slots=True)
class FrameResult:
    """The analyzer's judgement of one inbound frame, and what to send upstream now."""

    level_dbfs: float
    """Mean power of the frame, dBFS."""
    floor_dbfs: float
    """Noise floor after this frame, dBFS."""
    voice: bool
    """Sustained voice decision after this frame, hangover included."""
    candidate: bool
    """Some 10 ms block of the frame is above ``max(floor + margin_db, min_voice_dbfs)``."""
    onset: bool
    """Rising edge of sustained voice that our own outbound audio does not explain."""
    echo_explained: bool
    """The frame has candidates, but none survive subtracting the echo bound."""
    residual_dbfs: float
    """Mean power left after subtracting the echo bound, dBFS (the level if no echo)."""
    tone: bool
    """The frame was recognised as a DTMF dual tone, so it holds no candidate. Tested only
    where it could change a decision (a loud block or a voiced start while voice or onset
    is still building); a tone inside an utterance's hangover keeps the gate open like any
    sound."""
    voiced_start: bool
    """The frame passed the voiced-start test (it declared voice or the onset at once
    unless it was a tone). Tested only while voice or onset is not yet declared and the
    frame is loud enough, so False says nothing about other frames."""
    release: tuple[bytes, ...]
    """Frames to send upstream now, oldest first: originals or same-length silence. Order
    and count are preserved across calls: the k-th frame released overall is the k-th frame
    processed, so a FIFO of input timestamps maps each one back to Twilio time."""


@dataclass(slots=True, init=False)
class InboundAnalyzer:
    """Per-call inbound audio analysis; one instance per call, fed in stream order.

    Not thread-safe and not re-entrant. Timestamps must not go backwards; a gap (lost
    frames) is fine.
    """

    settings: AnalyzerSettings
    floor: NoiseFloor
    voice: Sustain
    near: Sustain
    """Sustained voice judged on the echo residual: its rising edge is ``onset``."""
    echo: EchoGuard | None
    gate: Gate
    history: bytes
    """The latest :data:`bridge.audio.vad.VOICING_SPAN` bytes of the stream (less at its
    start or after a gap): the voicing test reads the pitch lags behind a frame from it."""
    next_t_ms: float
    """Where the next frame starts if none is lost, ms (NaN before the first frame)."""

    def __init__(self, settings: AnalyzerSettings) -> None:
        self.settings = settings
        self.floor = NoiseFloor(
            floor_dbfs=settings.initial_floor_dbfs,
            fall_tau_ms=settings.floor_fall_tau_ms,
            rise_db_per_s=settings.floor_rise_db_per_s,
            min_dbfs=settings.floor_min_dbfs,
            max_dbfs=settings.floor_max_dbfs,
        )
        self.voice = Sustain(settings.min_onset_ms, settings.hangover_ms)
        self.near = Sustain(settings.min_onset_ms, settings.hangover_ms)
        self.echo = (
            EchoGuard(
                max_delay_ms=settings.echo_max_delay_ms,
                margin_db=settings.echo_margin_db,
                prior_erl_db=settings.echo_prior_erl_db,
            )
            if settings.echo_guard
            else None
        )
        self.gate = Gate(prefix_ms=settings.prefix_ms, enabled=settings.gate_enabled)
        self.history = b""
        self.next_t_ms = math.nan

    def note_outbound(self, payload: bytes, play_start_ms: float) -> None:
        """μ-law ``payload`` we sent to the caller starts playing at ``play_start_ms``.

        ``play_start_ms`` is on the caller's (Twilio media timestamp) axis. Call it when
        the frame is handed to Twilio, which is ahead of its playout. Audio noted only after
        the inbound frames carrying its echo were processed cannot protect them: that echo
        is judged as the caller.
        """
        if self.echo is not None:
            self.echo.note_outbound(payload, play_start_ms)

    def note_outbound_cleared(self, at_ms: float) -> None:
        """Playback stopped at ``at_ms`` (Twilio ``clear``): no echo of anything after it."""
        if self.echo is not None:
            self.echo.note_cleared(at_ms)

    def process(self, payload: bytes, t_ms: float, *, barge_in_active: bool) -> FrameResult:
        """Judge one inbound frame stamped ``t_ms`` and gate it.

        While ``barge_in_active`` is set, the gate passes every frame (and its hold).
        """
        if not payload:
            return self._empty(barge_in_active)
        settings = self.settings
        history = self._advance_history(payload, t_ms)
        powers = level.block_powers(payload)
        block_list: list[float] = powers.tolist()
        durations = level.block_durations_ms(len(payload))
        floor_dbfs = self.floor.floor_dbfs
        threshold = level.dbfs_to_power(
            max(floor_dbfs + settings.margin_db, settings.min_voice_dbfs)
        )
        total_ms = len(payload) / mulaw.BYTES_PER_MS
        frame_power = sum(map(operator.mul, block_list, durations)) / total_ms
        bound = None if self.echo is None else self.echo.observe(t_ms, powers)
        if bound is None:
            bound_list = [0.0] * len(block_list)
            residual_power = frame_power
        else:
            bound_list = bound
            residual_power = (
                sum(
                    max(power - echo_power, 0.0) * duration
                    for power, echo_power, duration in zip(
                        block_list, bound, durations, strict=True
                    )
                )
                / total_ms
            )
        voiced_voice, voiced_near = self._voiced_start(
            history, frame_power, residual_power, floor_dbfs
        )
        tone = (
            settings.reject_tones
            and (
                voiced_voice
                or voiced_near
                or (
                    max(block_list) >= threshold
                    and self._tone_matters(block_list, bound_list, threshold)
                )
            )
            and is_dual_tone(payload, frame_power)
        )
        candidate = near_candidate = onset = False
        for power, echo_power, duration in zip(block_list, bound_list, durations, strict=True):
            is_candidate = power >= threshold and not tone
            is_near = is_candidate and power - echo_power >= threshold
            candidate |= is_candidate
            near_candidate |= is_near
            self.voice.update(is_candidate, duration)
            onset |= self.near.update(is_near, duration)
            self.floor.update(level.power_to_dbfs(power), duration)
        if not tone:
            if voiced_voice:
                self.voice.start()
            if voiced_near:
                onset |= self.near.start()
        voice = self.voice.active
        release = self.gate.push(payload, open_now=barge_in_active or candidate or voice)
        return FrameResult(
            level_dbfs=level.power_to_dbfs(frame_power),
            floor_dbfs=self.floor.floor_dbfs,
            voice=voice,
            candidate=candidate,
            onset=onset,
            echo_explained=candidate and not near_candidate,
            residual_dbfs=level.power_to_dbfs(residual_power),
            tone=tone,
            voiced_start=voiced_voice or voiced_near,
            release=release,
        )

    def _advance_history(self, payload: bytes, t_ms: float) -> bytes:
        """The stream's bytes just before ``payload`` (empty after a gap or a jump in
        time: the voicing test must not correlate across it); keeps the new history."""
        history = self.history if abs(t_ms - self.next_t_ms) < 0.5 else b""
        self.history = (history + payload)[-VOICING_SPAN:]
        self.next_t_ms = t_ms + len(payload) / mulaw.BYTES_PER_MS
        return (history + payload)[-VOICING_SPAN:]

    def _voiced_start(
        self, samples: bytes, frame_power: float, residual_power: float, floor_dbfs: float
    ) -> tuple[bool, bool]:
        """Whether the frame is a voiced start for ``voice`` and for the onset.

        Voicing is only measured where it could change a decision: for ``voice`` while it
        is not active and the frame is loud enough, for the onset likewise on the echo
        residual. The residual must also carry at least half of the frame's power: the
        periodicity is measured on the line's signal, so it is only the caller's when the
        caller dominates (echo of the AI's voice is periodic too).
        """
        settings = self.settings
        if not settings.voiced_onset or (self.voice.active and self.near.active):
            return False, False
        needed = level.dbfs_to_power(
            max(floor_dbfs + settings.voiced_margin_db, settings.min_voice_dbfs)
        )
        for_voice = not self.voice.active and frame_power >= needed
        for_near = (
            not self.near.active
            and residual_power >= needed
            and 2.0 * residual_power >= frame_power
        )
        if not (for_voice or for_near):
            return False, False
        measured = voicing(mulaw.decode_float(samples))
        voiced = measured.is_voiced_start(
            level.dbfs_to_power(floor_dbfs + settings.voiced_start_margin_db),
            min_correlation=settings.voicing_threshold,
            max_decay_db=settings.voiced_max_decay_db,
        )
        return for_voice and voiced, for_near and voiced

    def _tone_matters(self, powers: list[float], bound: list[float], threshold: float) -> bool:
        """Whether a DTMF verdict could change a decision for a frame with a loud block:
        some block would start or extend a run that is still building. Once voice is
        sustained the gate is open anyway, and echo-explained blocks are no near
        candidates, so the test is skipped."""
        if not self.voice.active:
            return True
        return not self.near.active and max(map(operator.sub, powers, bound)) >= threshold

    def flush(self) -> tuple[bytes, ...]:
        """End of stream: the frames still held, as silence (order and count preserved)."""
        return self.gate.flush()

    def _empty(self, barge_in_active: bool) -> FrameResult:
        """An empty payload carries no audio: no judgement, but it still goes through the
        gate so that order and count are preserved."""
        voice = self.voice.active
        return FrameResult(
            level_dbfs=level.SILENCE_DBFS,
            floor_dbfs=self.floor.floor_dbfs,
            voice=voice,
            candidate=False,
            onset=False,
            echo_explained=False,
            residual_dbfs=level.SILENCE_DBFS,
            tone=False,
            voiced_start=False,
            release=self.gate.push(b"", open_now=barge_in_active or voice),
        )
