"""One decision per inbound frame: level, noise floor, voice, fast-path onset, gate.

:class:`InboundAnalyzer` is the sans-IO façade the Trio gate stage calls once per Twilio
media frame (μ-law, 8 bytes per ms, any length; ``t_ms`` is the frame's media timestamp).
Each frame is judged in 10 ms blocks, and every consumer reads the same judgement:

* ``candidate``: some block is at least ``margin_db`` above the learned noise floor
  (:class:`bridge.audio.vad.NoiseFloor`) and at least ``min_voice_dbfs``, and the frame
  is not a DTMF dual tone.
* ``voice``: declared on either of two paths, held through ``hangover_ms``
  (:class:`bridge.audio.vad.Sustain`):

  - *voiced start* (``voiced_onset``): one frame at least ``voiced_margin_db`` above the
    floor whose latest 20 ms are periodic at a pitch period (80-400 Hz), fill the window
    and do not decay (:func:`bridge.audio.vad.voicing`). Voice is periodic; noise and
    clicks are not, and ringing knocks and thuds, which are, decay from their first
    period. This is what makes the onset fast: at 20 dB SNR it fires 37-40 ms (p50) after
    the first sample of the synthetic speech, against 80 ms on the energy path alone.
  - *energy run*: candidates sustained for ``min_onset_ms``, for what is not voiced
    (whispers, fricatives, voice too noisy for the voicing test).

  A periodic frame during the hangover re-arms it, like a candidate block.
* ``onset``: the same rules applied to the *residual*, the block power minus the echo bound
  of :class:`bridge.audio.echo.EchoGuard`; a voiced start for the onset also needs the
  residual to carry at least half of the frame's power, since the echo of the AI's voice
  is periodic too. Its rising edge is the fast barge-in trigger; echo of our own audio
  cannot produce it. With no outbound audio in the last ``echo_max_delay_ms`` the residual
  equals the level, and ``onset`` is exactly the rising edge of ``voice``.
* ``release``: what goes upstream, from :class:`bridge.audio.gate.Gate`. The gate opens on
  ``candidate``, ``voice`` (so it stays open through the hangover) or ``barge_in_active``.
  It never opens on the echo-aware residual: the server does its own echo handling, and the
  gate's job is only to keep line noise out.

An onset is known at the end of the frame that completes it, so with 20 ms frames up to
20 ms of every delay is the wait for the frame. Cost: the voicing measurement (about 14 µs)
runs only on frames loud enough to change a decision that is not yet taken, and every
80 ms on a quiet line without outbound audio (:class:`bridge.audio.vad.VoicingFloor`).

Defaults were chosen with ``python -m bench.vad`` (synthetic corpus, through μ-law); the
measurements behind each are in :class:`AnalyzerSettings`.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import NamedTuple

from bridge.audio import level, mulaw
from bridge.audio.echo import BIN_MS, EchoGuard
from bridge.audio.gate import Gate
from bridge.audio.vad import (
    VOICING_SPAN,
    NoiseFloor,
    Sustain,
    VoicingFloor,
    is_dual_tone,
    voicing,
)

_BACKGROUND_EVERY_MS = 80.0
"""Period of the background voicing measurement on a quiet line, ms. One measurement costs
about 14 µs, so this adds about 3.5 µs per 20 ms frame to a quiet line without outbound
audio, and nothing while the AI plays (the stage's busiest frames). With the default
weight of :class:`bridge.audio.vad.VoicingFloor` (0.05) the average spans 1.6 s. Measuring
every 160 ms with weight 0.1 let 2 false onsets through on 2 min of first-order low-pass
noise (pole 0.9) and lost 2 onsets at 5 dB SNR; every 80 ms, neither."""


@dataclass(frozen=True, slots=True)
class AnalyzerSettings:
    """Tuning of :class:`InboundAnalyzer`. Levels dBFS, durations ms.

    The figures quoted come from ``python -m bench.vad`` (each condition 30 s, everything
    through μ-law; the sweep moves one setting at a time around these defaults). "Other
    draws" are the same conditions drawn with ``--seed-offset`` 1000, 2000 and 3000 and
    pooled, to check that the voicing settings are not fitted to one draw.

    Raises:
        ValueError: on construction, if a duration or margin is negative, ``min_onset_ms``
            or ``floor_fall_tau_ms`` is not positive, or ``echo_max_delay_ms`` is not a
            multiple of 10 ms.
    """

    gate_enabled: bool = True
    """False: every frame goes upstream untouched and at once (no hold, no silence)."""
    turn_window_ms: float = 0.0
    """The gate stays open this long after the caller last spoke (see
    :mod:`bridge.audio.gate`); the call core sets it from the server's silence duration."""
    prefix_ms: float = 100.0
    """Audio held while the gate is closed, released as real audio when a candidate
    arrives. The first candidate block comes 13-33 ms (p50) after the true onset at
    SNR >= 10 dB, so 100 ms covers the attack with room: 100 % of the caller's voiced
    frames reached upstream as audio at SNR >= 5 dB, 93-95 % at 0 dB."""
    margin_db: float = 6.0
    """A block is a voice candidate this far above the noise floor. On -45 dBFS noise
    whose level wobbles by ±4 dB, 3 dB gave 14 false onsets in 30 s, 4.5 dB gave 3, and
    6 dB none (3 dB also gave 2 on rumble). With the voiced path, 6 dB detects every onset
    of the corpus down to 0 dB SNR (the energy path alone missed 23 of 24 at 0 dB)."""
    min_onset_ms: float = 60.0
    """Candidates must run this long without a break before voice (and the onset) is
    declared on the energy path, the one for sound that is not voiced. It is what rejects
    clicks and knocks there: with the 1-40 ms transients of the corpus (about 30 in each
    30 s condition, 5 min in all), 20 ms gave 95 false onsets on clicks and 145 on knocks
    and thuds, 40 ms 35 and 35, 50 ms 9 and 12, 60 ms none. The delay on this path is
    min_onset_ms, plus the attack up to the threshold, plus up to one frame (the event is
    known at the end of the frame): p95 129 ms at SNR >= 10 dB with ``voiced_onset`` off.
    Voiced onsets do not wait for it."""
    voiced_onset: bool = True
    """Also declare voice (and the onset) on a single *voiced start* frame (see
    ``voiced_margin_db``) instead of waiting for ``min_onset_ms`` of energy. Off, as before
    it existed: p95 delay 129 ms in the worst condition at SNR >= 10 dB (p50 92 ms over all
    of them), and 23 of the 48 onsets below 10 dB SNR missed. On: 70 ms (p50 41 ms) and
    none missed, with no false trigger added (other draws: one, on rumble with pole 0.95)."""
    voiced_margin_db: float = 4.0
    """A frame can be a voiced start if its mean power is this far above the noise floor
    (and at least ``min_voice_dbfs``) and its latest 20 ms correlate at a pitch period by
    ``voicing_threshold``, fill the window and do not decay
    (:meth:`bridge.audio.vad.Voicing.is_voiced_start`). 2 dB let one knock and one rumble
    through, 3 dB one knock, 4 dB nothing, at the same delays; 6 dB moved the worst p95 at
    SNR >= 10 dB from 70 to 87 ms and missed 14 onsets below 10 dB SNR. On the other
    draws 3 dB found the 5 onsets below 10 dB SNR (of 144) that 4 dB misses, with no false
    trigger; the knock decides."""
    voicing_threshold: float = 0.5
    """Least normalized autocorrelation of a voiced start. Line noise stays under 0.45
    (p99.9 0.39). 0.4 and 0.45 gave the same worst p95 as 0.5 on the corpus, but let one
    knock through; on the other draws 0.45 gave a p50 of 53 ms instead of 60 at 10 dB SNR
    and a p95 of 69 ms instead of 71, with no false trigger. 0.6 moved the worst p95 at
    SNR >= 10 dB to 87 ms."""
    voicing_noise_sigmas: float = 4.0
    """The voicing threshold rises to this many standard deviations above the line's
    background voicing (:class:`bridge.audio.vad.VoicingFloor`), measured every 80 ms on
    quiet frames without voice or outbound audio. On the rumble conditions (low-frequency
    noise) a fixed threshold gave 17 false onsets in 1.5 min, 3 gave 4 and 4 none (other
    draws: 13, and 1 at pole 0.95); 5 missed 5 onsets below 10 dB SNR and moved the worst
    p95 at SNR >= 10 dB to 83 ms, as line noise's own spread then reaches the fixed
    threshold."""
    voiced_start_margin_db: float = 2.0
    """The first pitch period of the 20 ms window must be this far above the noise floor,
    so that a transient starting late in the window is not judged on its first periods.
    0, 2 and 3 dB did the same on the corpus; on the other draws 0 dB let a knock through,
    and 3 dB moved the p50 at SNR >= 10 dB from 44 to 47 ms."""
    voiced_max_decay_db: float = 2.0
    """The last pitch period may be at most this far under the loudest period-long span
    of the window. 1 dB rejected rising voice too (worst p95 at SNR >= 10 dB 82 ms, 3
    onsets missed below 10 dB SNR); 3 and 4 dB let 2 knocks through (other draws: 1)."""
    hangover_ms: float = 300.0
    """Voice stays declared (and the gate open) this long after the last candidate block
    or periodic frame. Word gaps (60-180 ms, plus the syllable edges below the threshold)
    chop speech with less: re-onsets inside utterances at SNR >= 10 dB were 61 at 100 ms,
    12 at 200 ms, and 0 at 300 ms. Cost: about 240 ms of noise passed after each
    utterance."""
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
    """1.5 dB/s let the ±4 dB wobble and a rumble through once each; 6 dB/s lost 5 onsets
    below 10 dB SNR (long utterances lift the floor). A noise step of D dB above the
    margin reads as voice for about D/3 seconds."""
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
    margin hides the caller: the p95 onset delay in double talk was 120, 174 and 922 ms at
    3, 6 and 9 dB (no caller onset missed at 6 dB)."""
    echo_prior_erl_db: float = 10.0
    """Echo return loss assumed at the worst-case delay until the first estimate, which
    lands 0.8-1.0 s after the AI first speaks in a call (bench echo conditions; see
    :class:`bridge.audio.echo.EchoGuard`)."""

    def __post_init__(self) -> None:
        for name in (
            "prefix_ms",
            "turn_window_ms",
            "margin_db",
            "hangover_ms",
            "echo_margin_db",
            "voiced_margin_db",
            "voiced_max_decay_db",
            "voicing_noise_sigmas",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.min_onset_ms <= 0 or self.floor_fall_tau_ms <= 0:
            raise ValueError("min_onset_ms and floor_fall_tau_ms must be > 0")
        if self.echo_max_delay_ms < 0 or self.echo_max_delay_ms % BIN_MS:
            raise ValueError(f"echo_max_delay_ms must be a multiple of {BIN_MS} ms")


@dataclass(frozen=True, slots=True)
class _Gains:
    """The settings' margins as power ratios, and ``min_voice_dbfs`` as a power, so a
    frame's thresholds are products with the floor's power."""

    candidate: float
    voiced: float
    start: float
    min_voice: float


# A NamedTuple rather than a frozen dataclass: one is built per 20 ms frame, and a frozen
# dataclass's generated __init__ costs about 2 µs where a NamedTuple's costs 0.3 µs.
class FrameResult(NamedTuple):
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
    """Mean power left after subtracting the echo bound, dBFS: the level if no echo is
    possible, and also for a frame too quiet for the residual to matter (no candidate
    block, under ``voiced_margin_db``), whose bound is not computed."""
    tone: bool
    """The frame was recognised as a DTMF dual tone, so it holds no candidate. Tested only
    where it could change a decision (a loud block or a voiced start while voice or onset
    is still building); a tone inside an utterance's hangover keeps the gate open like any
    sound."""
    release: tuple[bytes, ...]
    """Frames to send upstream now, oldest first: originals or same-length silence. Order
    and count are preserved across calls: the k-th frame released overall is the k-th frame
    processed, so a FIFO of input timestamps maps each one back to Twilio time."""
    voiced: bool
    """The frame was judged voiced, for ``voice`` or for the onset, and is no tone: a
    voiced start while the decision was not active (it declared it at once), or periodic
    while the decision was held only by its hangover (it re-armed it). Tested only in
    those cases and only on frames at least ``voiced_margin_db`` above the floor, so False
    says nothing about other frames."""


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
    gains: _Gains
    """The settings' margins as power ratios (fixed per call)."""
    voicing_floor: VoicingFloor
    next_background_ms: float
    """When the background voicing is measured next, ms."""

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
        self.gate = Gate(
            prefix_ms=settings.prefix_ms,
            turn_window_ms=settings.turn_window_ms,
            enabled=settings.gate_enabled,
        )
        self.history = b""
        self.next_t_ms = math.nan
        self.gains = _Gains(
            candidate=level.dbfs_to_power(settings.margin_db),
            voiced=level.dbfs_to_power(settings.voiced_margin_db),
            start=level.dbfs_to_power(settings.voiced_start_margin_db),
            min_voice=level.dbfs_to_power(settings.min_voice_dbfs),
        )
        self.voicing_floor = VoicingFloor()
        self.next_background_ms = -math.inf

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
        total_ms = len(payload) / mulaw.BYTES_PER_MS
        # The voicing test reads the pitch lags behind the frame from the stream's history.
        # A frame stamped within half its duration of where the previous one ended follows
        # it (stamps may jitter by a millisecond or two); otherwise frames were lost or time
        # jumped, and the history starts over: no correlation across a gap, and the first
        # 20 ms after one cannot be a voiced start.
        if t_ms == self.next_t_ms or abs(t_ms - self.next_t_ms) < total_ms / 2:
            history = self.history = (self.history + payload)[-VOICING_SPAN:]
        else:
            history = self.history = payload[-VOICING_SPAN:]
        self.next_t_ms = t_ms + total_ms
        block_list = level.block_powers(payload)
        durations = level.block_durations_ms(len(payload))
        gains = self.gains
        floor_power = level.dbfs_to_power(self.floor.floor_dbfs)
        threshold = max(floor_power * gains.candidate, gains.min_voice)
        frame_power = sum(map(operator.mul, block_list, durations)) / total_ms
        loudest = max(block_list)
        needed = max(floor_power * gains.voiced, gains.min_voice)
        echo_possible = False
        residuals, residual_power = block_list, frame_power
        if self.echo is not None and self.echo.record(t_ms, block_list):
            echo_possible = True
            # The residual decides only for a frame with a candidate block or one loud
            # enough for a voiced start; for the rest (most frames while the AI talks and
            # the caller listens) the bound is not computed.
            if loudest >= threshold or (settings.voiced_onset and frame_power >= needed):
                bound = self.echo.bound(len(block_list))
                residuals = list(map(operator.sub, block_list, bound))
                residual_energy = 0.0
                for residual, duration in zip(residuals, durations, strict=True):
                    if residual > 0.0:
                        residual_energy += residual * duration
                residual_power = residual_energy / total_ms
        voice_run, near_run = self.voice, self.near
        voiced_voice = voiced_near = False
        if settings.voiced_onset:
            if frame_power < needed:
                if not echo_possible and not voice_run.active and t_ms >= self.next_background_ms:
                    # A quiet frame with no voice and no echo: the line's background.
                    self.next_background_ms = t_ms + _BACKGROUND_EVERY_MS
                    self.voicing_floor.update(voicing(mulaw.decode_float(history)).correlation)
            else:
                # Measured only where it could change a decision (see _voicing).
                for_voice = not voice_run.active or loudest < threshold
                for_near = (
                    residual_power >= needed
                    and 2.0 * residual_power >= frame_power
                    and (not near_run.active or max(residuals) < threshold)
                )
                if for_voice or for_near:
                    periodic, starts = self._voicing(history, floor_power)
                    voiced_voice = for_voice and (periodic if voice_run.active else starts)
                    voiced_near = for_near and (periodic if near_run.active else starts)
        # The DTMF test runs only where its verdict could change a decision: a voiced
        # frame, or a loud block that would start or extend a run still building. Once
        # voice is sustained the gate is open anyway, and echo-explained blocks are no near
        # candidates.
        tone = (
            settings.reject_tones
            and (
                voiced_voice
                or voiced_near
                or (
                    loudest >= threshold
                    and (
                        not voice_run.active
                        or (not near_run.active and max(residuals) >= threshold)
                    )
                )
            )
            and is_dual_tone(payload, frame_power)
        )
        onset = False
        if tone:
            voiced_voice = voiced_near = False
        # Before the blocks, so that a voiced frame at the end of the hangover continues the
        # decision instead of ending it and starting it again (a spurious edge).
        if voiced_voice:
            voice_run.start()
        if voiced_near:
            onset = near_run.start()
        candidate = near_candidate = False
        floor = self.floor
        for power, residual, duration in zip(block_list, residuals, durations, strict=True):
            is_candidate = power >= threshold and not tone
            is_near = is_candidate and residual >= threshold
            candidate |= is_candidate
            near_candidate |= is_near
            voice_run.update(is_candidate, duration)
            onset |= near_run.update(is_near, duration)
            floor.update(level.power_to_dbfs(power), duration)
        voice = voice_run.active
        release = self.gate.push(
            payload, open_now=barge_in_active or candidate or voice, speaking=voice and candidate
        )
        return FrameResult(
            level_dbfs=level.power_to_dbfs(frame_power),
            floor_dbfs=floor.floor_dbfs,
            voice=voice,
            candidate=candidate,
            onset=onset,
            echo_explained=candidate and not near_candidate,
            residual_dbfs=level.power_to_dbfs(residual_power),
            tone=tone,
            release=release,
            voiced=voiced_voice or voiced_near,
        )

    def _voicing(self, samples: bytes, floor_power: float) -> tuple[bool, bool]:
        """Voicing of the latest 20 ms of ``samples`` (μ-law): whether they are periodic,
        and whether they are a voiced start; ``floor_power`` is the noise floor's.

        :meth:`process` measures it only where it could change a decision, on frames at
        least ``voiced_margin_db`` above the floor: while a decision is not active (a voiced
        start declares it), or while it is active but no block of the frame is a candidate
        (a periodic frame re-arms the hangover, so a quiet vowel does not let the utterance
        lapse and start again). Starts need
        :meth:`bridge.audio.vad.Voicing.is_voiced_start`; a continuation only the
        periodicity. For the onset, the residual must also carry at least half of the
        frame's power: the periodicity is measured on the line's signal, so it is the
        caller's only when the caller dominates (echo of the AI's voice is periodic too).
        With a tight echo bound (``echo_margin_db`` 3 dB) that kept the false onsets on
        echo at the energy path's 4, against 18 without it; with the default bound it costs
        double talk some speed (p95 delay 174 ms instead of 120 ms) and no onset.

        The voicing threshold is ``voicing_threshold`` or the line's background voicing
        (:class:`bridge.audio.vad.VoicingFloor`), whichever is higher. The background is
        measured on quiet frames only (see :meth:`process`): learning it from the frames
        judged here instead was tried, and it fed on the caller's own quiet syllables,
        raising the threshold until 13 of the 48 onsets below 10 dB SNR were missed.
        """
        settings = self.settings
        measured = voicing(mulaw.decode_float(samples))
        least = self.voicing_floor.threshold(
            settings.voicing_threshold, settings.voicing_noise_sigmas
        )
        periodic = measured.correlation >= least
        starts = periodic and measured.is_voiced_start(
            floor_power * self.gains.start,
            min_correlation=least,
            max_decay_db=settings.voiced_max_decay_db,
        )
        return periodic, starts

    def flush(self) -> tuple[bytes, ...]:
        """End of stream: the frames still held, as silence (order and count preserved)."""
        return self.gate.flush()

    def fill(self, silence: bytes, *, barge_in_active: bool) -> tuple[bytes, ...]:
        """Stand-in ``silence`` for caller audio that never arrived (a timestamp gap).

        It is not the line's sound, so it is not judged: the noise floor, the voicing
        history and the echo guard do not see it (the next frame starts a new history, as
        after any gap). Its duration does count toward the hangovers, with no candidate,
        so a decision held over the gap ends when it would have in silence. It goes
        through the gate like any frame, keeping the release order and count.
        """
        duration = len(silence) / mulaw.BYTES_PER_MS
        self.voice.update(False, duration)
        self.near.update(False, duration)
        return self.gate.push(silence, open_now=barge_in_active or self.voice.active)

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
            release=self.gate.push(b"", open_now=barge_in_active or voice),
            voiced=False,
        )
