"""Adaptive noise floor, sustained-voice detection with hangover, voicing, DTMF rejection.

Small pieces that :mod:`bridge.audio.analyzer` runs per 10 ms block
(:data:`bridge.audio.level.BLOCK_MS`) or per frame; all levels are dBFS, all durations ms.

* :class:`NoiseFloor` learns the line's noise level per call: it falls quickly toward
  quieter blocks (the floor tracks the *dips* between syllables and words) and rises only
  at a bounded rate in dB per second, so speech cannot drag it up but a louder line (a car
  starting) is learned within seconds. Failure mode: a step in the noise level of
  ``D`` dB above ``floor + margin`` reads as voice for about ``D / rise_db_per_s`` seconds.
* :class:`Sustain` turns per-block candidates into a sustained decision: active after
  ``min_run_ms`` of consecutive candidate blocks, held through ``hangover_ms`` of
  non-candidates so word gaps do not chop speech. It reports the rising edge, and
  :meth:`Sustain.start` activates it at once for a voiced start.
* :func:`voicing` measures whether the latest 20 ms are periodic at a pitch period
  (normalized autocorrelation peak over lags of 2.5-12.5 ms, F0 80-400 Hz) and how the
  energy of one period evolves across them. :meth:`Voicing.is_voiced_start` turns that
  into the fast onset test: voice is periodic, clicks and noise are not, and the resonant
  knocks and thuds that are periodic decay from their first period on, while a voice
  starting up does not.
* :func:`is_dual_tone` recognises DTMF key tones (two sinusoids, one from the row group,
  one from the column group, carrying almost all the power), which are loud and
  sustained but are not the caller's voice. Twilio reports keys as ``dtmf`` events anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt

from bridge.audio import level, mulaw

Float32Array = npt.NDArray[np.float32]

DTMF_ROWS_HZ: Final = (697.0, 770.0, 852.0, 941.0)
DTMF_COLUMNS_HZ: Final = (1209.0, 1336.0, 1477.0, 1633.0)
_TONE_FREQS_HZ: Final = DTMF_ROWS_HZ + DTMF_COLUMNS_HZ
_MIN_TONE_SAMPLES: Final = 80
"""Under 10 ms a single-bin DFT is over 100 Hz wide, too wide to tell DTMF tones from
other sound: no tone decision."""
_MAX_TONE_SAMPLES: Final = 320
"""Longer payloads are judged on their last 40 ms (bounded cost and basis size)."""

PITCH_MIN_LAG: Final = 20
"""Shortest pitch period tested, samples (2.5 ms: F0 up to 400 Hz)."""
PITCH_MAX_LAG: Final = 100
"""Longest pitch period tested, samples (12.5 ms: F0 down to 80 Hz)."""
VOICING_WINDOW: Final = 160
"""Samples judged by :func:`voicing` (20 ms: two to eight pitch periods)."""
VOICING_SPAN: Final = VOICING_WINDOW + PITCH_MAX_LAG + 1
"""Samples :func:`voicing` reads: the window, the longest lag and one more (about 32.6 ms)."""


@dataclass(slots=True)
class NoiseFloor:
    """Per-call noise-floor tracker in dBFS.

    ``floor_dbfs`` starts at a high guess so that the first ~150 ms of any line pull it
    *down* to the line's level (a fall is fast; a rise is slow). Starting low instead would
    make a loud line (a car at -40 dBFS) read as voice until the slow rise caught up.
    The floor always stays within ``[min_dbfs, max_dbfs]``.
    """

    floor_dbfs: float
    fall_tau_ms: float
    """Time constant of the exponential fall toward a quieter block, ms."""
    rise_db_per_s: float
    """Largest rise of the floor per second of louder blocks, dB/s."""
    min_dbfs: float
    max_dbfs: float

    def update(self, level_dbfs: float, duration_ms: float) -> float:
        """Fold in one block of ``duration_ms`` at ``level_dbfs``; return the new floor."""
        floor = self.floor_dbfs
        if level_dbfs < floor:
            floor += (level_dbfs - floor) * (1.0 - math.exp(-duration_ms / self.fall_tau_ms))
        else:
            floor += self.rise_db_per_s * duration_ms / 1000.0
            if floor > level_dbfs:
                floor = level_dbfs
        # Conditionals rather than min()/max(): this runs twice per frame on the hot path.
        if floor < self.min_dbfs:
            floor = self.min_dbfs
        elif floor > self.max_dbfs:
            floor = self.max_dbfs
        self.floor_dbfs = floor
        return floor


@dataclass(slots=True)
class Sustain:
    """Sustained decision over per-block candidates, with a minimum run and a hangover.

    Active once candidates have run for ``min_run_ms`` without a break; any non-candidate
    block before that restarts the run, so a click (one or two blocks) never activates it.
    While active, each candidate block re-arms ``hangover_ms``; the decision drops when
    non-candidate blocks have used the hangover up.
    """

    min_run_ms: float
    hangover_ms: float
    run_ms: float = 0.0
    hang_left_ms: float = 0.0
    active: bool = False

    def update(self, candidate: bool, duration_ms: float) -> bool:
        """Fold in one block; return True only on the block that makes the decision active."""
        if candidate:
            self.run_ms += duration_ms
            if self.active:
                self.hang_left_ms = self.hangover_ms
                return False
            if self.run_ms >= self.min_run_ms:
                self.active = True
                self.hang_left_ms = self.hangover_ms
                return True
            return False
        self.run_ms = 0.0
        if self.active:
            self.hang_left_ms -= duration_ms
            if self.hang_left_ms <= 0.0:
                self.active = False
        return False

    def start(self) -> bool:
        """Activate at once (a voiced start), re-arming the hangover; return True only if
        the decision was not active yet (the rising edge)."""
        self.hang_left_ms = self.hangover_ms
        if self.active:
            return False
        self.active = True
        return True


@dataclass(frozen=True, slots=True)
class Voicing:
    """Periodicity of a 20 ms window and the energy of its pitch periods.

    Powers are mean powers (of samples in [-1, 1)) over one period-long span of the
    window, on the scale of :func:`bridge.audio.level.frame_power`.
    """

    correlation: float
    """Normalized autocorrelation at ``lag``, in [-1, 1]; 0.0 if no lag could be tested."""
    lag: int
    """The best pitch period, samples (the shortest on ties; 0 if none was tested)."""
    first_power: float
    """Mean power of the window's first period."""
    last_power: float
    """Mean power of the window's last period."""
    loudest_power: float
    """Mean power of the loudest period-long span of the window."""

    def is_voiced_start(
        self,
        start_power: float,
        *,
        min_correlation: float,
        max_decay_db: float,
    ) -> bool:
        """Whether the window looks like a voice starting up rather than a transient.

        Three tests, all needed: the window is periodic (``correlation`` at least
        ``min_correlation``); the sound fills it (its first period has at least
        ``start_power``, so a transient that starts late in the window is not judged on
        the few periods it has shown); and it does not decay (the last period is at most
        ``max_decay_db`` under the loudest period-long span). A resonant knock is as
        periodic as a vowel, but its loudest period is its first one: the knocks and
        thuds of ``bench.vad`` (1-40 ms, decaying by 2-5 time constants over their length)
        lose over 2 dB of power within 5 ms, one period at 200 Hz. Measuring the energy
        over whole periods keeps the pitch pulses of a steady voice from looking like a
        decay: tried on 5 ms blocks instead, in an offline trial, the test moved the p95
        delay at 20 dB SNR from 44 to 63 ms.
        """
        return (
            self.correlation >= min_correlation
            and self.first_power >= start_power
            and self.last_power * 10.0 ** (max_decay_db / 10.0) >= self.loudest_power
        )


_NOT_VOICED: Final = Voicing(0.0, 0, 0.0, 0.0, 0.0)


@dataclass(slots=True)
class VoicingFloor:
    """The line's background periodicity: running mean and variance of the
    :func:`voicing` correlation on frames without voice, and the threshold they imply.

    Like :class:`NoiseFloor` for levels, it keeps the voiced test from firing on what the
    line does anyway. On the corpus's line noise the background stays near a mean of 0.2
    and a standard deviation of 0.05-0.065, so ``mean + sigmas · std`` stays under any
    useful voicing threshold and the fixed threshold rules; on low-frequency noise (rumble,
    a car) spurious peaks are common and the threshold rises with them (first-order
    low-pass noise with pole 0.9: mean 0.31, standard deviation 0.12). The prior is the
    line noise's figures and counts as ``prior_count`` measurements: the k-th measurement
    gets weight 1/(k + prior_count) until that falls to ``weight``, so the first ones count
    for more than in the steady average. Without that warm start, the rumble with pole 0.9
    of ``bench.vad`` gave one false onset 2.5 s into the call, before the average caught up;
    with it, none.
    """

    mean: float = 0.2
    variance: float = 0.05**2
    weight: float = 0.05
    """Weight of each new measurement once learned (an exponential average over about 20)."""
    prior_count: int = 4
    measured: int = 0
    """Measurements folded in so far."""

    def update(self, correlation: float) -> None:
        """Fold in the voicing correlation of one frame without voice."""
        self.measured += 1
        weight = max(self.weight, 1.0 / (self.measured + self.prior_count))
        deviation = correlation - self.mean
        self.mean += weight * deviation
        self.variance = (1.0 - weight) * (self.variance + weight * deviation**2)

    def threshold(self, least: float, sigmas: float) -> float:
        """The voicing threshold: ``least``, or ``sigmas`` standard deviations above the
        background mean if that is higher."""
        return max(least, self.mean + sigmas * math.sqrt(self.variance))


def voicing(samples: Float32Array) -> Voicing:
    """Periodicity of the last :data:`VOICING_WINDOW` samples of ``samples`` (8 kHz).

    For each lag ``T`` from :data:`PITCH_MIN_LAG` to :data:`PITCH_MAX_LAG` that the
    earlier samples allow, the window ``w`` is correlated with the same span ``T`` samples
    earlier, ``w_T``: ``r(T) = <w, w_T> / sqrt(|w|² |w_T|²)``. The peak ``r`` is about 1
    for a steady periodic sound at that period, about ``s / (1 + s)`` for one at
    signal-to-noise power ratio ``s`` in noise, and low for noise alone: over the lags, the
    corpus's line noise peaks at 0.20 (median), 0.35 (p99) and 0.39 (p99.9), white noise
    lower. Noise with most of its power at low frequencies has fewer independent samples
    per window and peaks higher (first-order low-pass noise with pole 0.9: median 0.31,
    p99 0.62), which :class:`VoicingFloor` learns. A pure tone or a resonance correlates at
    its period as well as a vowel does; :meth:`Voicing.is_voiced_start` needs the energy
    figures to tell those apart.

    Fewer than ``VOICING_WINDOW + PITCH_MIN_LAG + 1`` samples, or a silent window, give a
    correlation of 0.0. Cost: about a dozen numpy calls (one ``np.correlate`` of 81 lags by
    160 samples), about 14 µs.
    """
    n = len(samples)
    window = VOICING_WINDOW
    # One sample more than the longest lag: energy[k - 1] below is then never energy[-1].
    max_lag = min(PITCH_MAX_LAG, n - window - 1)
    if max_lag < PITCH_MIN_LAG:
        return _NOT_VOICED
    # energy[k] is the energy of samples[: k + 1], so samples[a:b] holds energy[b-1] - energy[a-1].
    # float64: a quiet period after a loud one is a small difference of large sums.
    energy = np.cumsum(samples * samples, dtype=np.float64)
    start = n - window
    window_energy = float(energy[n - 1] - energy[start - 1])
    if window_energy <= 0.0:
        return _NOT_VOICED
    # Index k of these three arrays is lag max_lag - k.
    products = np.correlate(samples[start - max_lag : n - PITCH_MIN_LAG], samples[start:])
    lagged_energy = (
        energy[n - max_lag - 1 : n - PITCH_MIN_LAG]
        - energy[start - max_lag - 1 : start - PITCH_MIN_LAG]
    )
    correlations = products / np.sqrt(np.maximum(lagged_energy * window_energy, 1e-30))
    # Searched from the shortest lag: a tie with a multiple of the period goes to the period.
    lag = PITCH_MIN_LAG + int(np.argmax(correlations[::-1]))
    periods = energy[start + lag - 1 : n] - energy[start - 1 : n - lag]
    return Voicing(
        correlation=float(correlations[max_lag - lag]),
        lag=lag,
        first_power=float(periods[0]) / lag,
        last_power=float(periods[-1]) / lag,
        loudest_power=float(periods.max()) / lag,
    )


@lru_cache(maxsize=16)
def _tone_basis(n_samples: int) -> Float32Array:
    """Cosine rows then sine rows at the 8 DTMF frequencies over ``n_samples`` (8 kHz)."""
    t = np.arange(n_samples, dtype=np.float64) / mulaw.SAMPLE_RATE
    phase = 2.0 * np.pi * np.asarray(_TONE_FREQS_HZ)[:, None] * t[None, :]
    return np.concatenate([np.cos(phase), np.sin(phase)]).astype(np.float32)


def dual_tone_powers(payload: bytes) -> tuple[float, float]:
    """Power of the strongest DTMF row tone and of the strongest column tone in ``payload``.

    A single-bin DFT (Goertzel) at each of the 8 DTMF frequencies; for a sinusoid of
    amplitude ``A`` the estimate is its power ``A²/2``, on the same scale as
    :func:`bridge.audio.level.frame_power`. Returns ``(0.0, 0.0)`` for payloads shorter
    than 10 ms, where the row tones cannot be told apart.
    """
    n = len(payload)
    if n < _MIN_TONE_SAMPLES:
        return 0.0, 0.0
    projections = _tone_basis(n) @ mulaw.decode_float(payload)
    squares: list[float] = (projections * projections).tolist()
    powers = [c + s for c, s in zip(squares[:8], squares[8:], strict=True)]
    scale = 2.0 / (n * n)
    return max(powers[:4]) * scale, max(powers[4:]) * scale


def is_dual_tone(
    payload: bytes, power: float, *, min_fraction: float = 0.6, min_each: float = 0.08
) -> bool:
    """True if ``payload`` (mean power ``power``) is a DTMF-like dual tone.

    Both a row tone and a column tone must carry at least ``min_each`` of the power, and
    together at least ``min_fraction`` of it. Measured on 20 ms frames: the 16 DTMF pairs
    at the worst tolerances a receiver must accept (±1.5 % frequency error, 4.4 dB twist)
    give a fraction ≥ 0.65 with the weaker tone ≥ 0.10; 65,000 voiced frames of five
    synthetic voices (F0 95-210 Hz, :mod:`bridge.audio.synth`) never had a weaker tone above
    0.068, although one strong harmonic can put the fraction up to 0.93. The ``min_each``
    test is what separates them. A payload longer than 40 ms is judged on its last 40 ms.
    """
    if len(payload) > _MAX_TONE_SAMPLES:
        payload = payload[-_MAX_TONE_SAMPLES:]
        power = level.frame_power(payload)
    if power <= 0.0:
        return False
    row, column = dual_tone_powers(payload)
    return min(row, column) >= min_each * power and row + column >= min_fraction * power
