"""Deterministic voice-like synthetic audio for the simulators, tests and benchmarks.

Not speech, but it has what detectors and ears key on: a glottal pulse train with a
drifting fundamental (F0), harmonics shaped by moving formants, syllables of 120-260 ms
at about 4-5 per second with raised-cosine attacks, short word gaps and a little
aspiration noise. Same ``seed`` and arguments, same samples.

All functions return float32 samples in [-1, 1) at ``sample_rate`` (default 8000 Hz,
the telephony rate). Levels are RMS in dBFS over the voiced parts (a full-scale sine
is -3 dBFS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bridge.audio import mulaw

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Voice:
    """Timbre of a synthetic talker."""

    f0_hz: float = 120.0
    """Mean fundamental frequency (Hz): about 120 for a low voice, 210 for a high one."""
    level_dbfs: float = -20.0
    """RMS level of voiced audio, dBFS."""
    syllables_per_s: float = 4.5
    word_gap_ms: tuple[int, int] = (60, 180)
    """Range of the pauses (ms) inserted after about one syllable in three."""


AI_VOICE = Voice(f0_hz=205.0, level_dbfs=-18.0, syllables_per_s=4.8)
CALLER_VOICE = Voice(f0_hz=118.0, level_dbfs=-20.0, syllables_per_s=4.2)

# Formant centres (F1, F2, F3) in Hz for a handful of vowel-like syllable nuclei.
_VOWELS: tuple[tuple[float, float, float], ...] = (
    (730.0, 1090.0, 2440.0),
    (530.0, 1840.0, 2480.0),
    (270.0, 2290.0, 3010.0),
    (570.0, 840.0, 2410.0),
    (300.0, 870.0, 2240.0),
    (660.0, 1720.0, 2410.0),
)


def _syllable_plan(
    duration_s: float, voice: Voice, rng: np.random.Generator
) -> list[tuple[float, float, int]]:
    """(start_s, length_s, vowel index) for each syllable that fits in ``duration_s``."""
    plan: list[tuple[float, float, int]] = []
    t = 0.0
    mean_len = 1.0 / voice.syllables_per_s
    while True:
        length = float(np.clip(rng.normal(mean_len, mean_len * 0.25), 0.12, 0.26))
        if t + length > duration_s:
            break
        plan.append((t, length, int(rng.integers(len(_VOWELS)))))
        t += length
        if rng.random() < 0.33:
            t += float(rng.integers(voice.word_gap_ms[0], voice.word_gap_ms[1] + 1)) / 1000.0
    return plan


def speech_like(
    duration_ms: int,
    *,
    seed: int,
    voice: Voice = CALLER_VOICE,
    sample_rate: int = 8000,
    onset_attack_ms: float | None = None,
) -> Float32Array:
    """``duration_ms`` of voice-like audio; the last syllable ends before the duration.

    Every syllable's envelope is ``sin^1.5`` over its length, so it rises for half of it
    (60-130 ms): from its first non-zero sample it takes 25-55 ms to come within 10 dB of
    its peak, a slow attack, like a glide or a nasal. ``onset_attack_ms`` gives the *first*
    syllable a raised-cosine rise over that many ms instead, held at its peak up to the
    syllable's middle and falling as before: about 10 ms is a plosive or a hard vowel
    onset. The rest of the audio is the same either way, up to the overall gain (the
    level is set over the voiced parts, which the faster onset lengthens a little).
    """
    rng = np.random.default_rng(seed)
    n = int(sample_rate * duration_ms / 1000)
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out.astype(np.float32)
    t = np.arange(n, dtype=np.float64) / sample_rate
    drift = np.cumsum(rng.normal(0.0, 0.002, n))
    drift -= np.linspace(drift[0], drift[-1], n)  # keep the F0 contour centred
    f0 = voice.f0_hz * (1.0 + np.clip(drift, -0.2, 0.2) + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    envelope = np.zeros(n, dtype=np.float64)
    formants = np.zeros((n, 3), dtype=np.float64)
    formants[:] = _VOWELS[0]
    for index, (start_s, length_s, vowel) in enumerate(
        _syllable_plan(duration_ms / 1000.0, voice, rng)
    ):
        a, b = int(start_s * sample_rate), int((start_s + length_s) * sample_rate)
        shape = np.sin(np.linspace(0.0, np.pi, b - a)) ** 1.5
        if index == 0 and onset_attack_ms is not None:
            shape = _fast_onset(shape, onset_attack_ms * sample_rate / 1000.0)
        envelope[a:b] = np.maximum(envelope[a:b], shape)
        formants[a:b] = _VOWELS[vowel]
    nyquist = sample_rate / 2
    harmonics = int(nyquist // (voice.f0_hz * 0.8))
    for k in range(1, harmonics + 1):
        freq = k * f0
        weight = np.zeros(n, dtype=np.float64)
        for i, bandwidth in enumerate((90.0, 110.0, 170.0)):
            weight += np.exp(-0.5 * ((freq - formants[:, i]) / bandwidth) ** 2) / (i + 1)
        weight *= (freq < nyquist * 0.95) / k**0.6
        out += weight * np.sin(k * phase)
    out += rng.normal(0.0, 0.04, n) * np.abs(np.gradient(envelope)) * 40.0
    out *= envelope
    voiced = envelope > 0.2
    rms = float(np.sqrt(np.mean(out[voiced] ** 2))) if voiced.any() else 0.0
    if rms > 0.0:
        out *= 10 ** (voice.level_dbfs / 20.0) / rms
    return np.clip(out, -1.0, 0.999).astype(np.float32)


def _fast_onset(shape: npt.NDArray[np.float64], attack_samples: float) -> npt.NDArray[np.float64]:
    """``shape`` (a ``sin^1.5`` syllable) with its rising half replaced by a raised-cosine
    rise over ``attack_samples`` that then holds at 1.0."""
    k = np.arange(len(shape), dtype=np.float64)
    rise = np.where(
        k < attack_samples, 0.5 - 0.5 * np.cos(np.pi * k / max(attack_samples, 1.0)), 1.0
    )
    middle = len(shape) // 2
    out: npt.NDArray[np.float64] = rise * np.where(k < middle, 1.0, shape)
    return out


def speech_like_ulaw(duration_ms: int, *, seed: int, voice: Voice = CALLER_VOICE) -> bytes:
    """:func:`speech_like` at 8 kHz, μ-law encoded (8 bytes per ms)."""
    return mulaw.encode_float(speech_like(duration_ms, seed=seed, voice=voice))


def line_noise(
    duration_ms: int, *, seed: int, level_dbfs: float, sample_rate: int = 8000
) -> Float32Array:
    """Stationary telephone-line-like noise: pink-ish hiss plus a little 50 Hz hum."""
    rng = np.random.default_rng(seed)
    n = int(sample_rate * duration_ms / 1000)
    white = rng.normal(0.0, 1.0, n)
    pinkish = np.convolve(white, np.array([0.5, 0.3, 0.2]), mode="same")
    t = np.arange(n) / sample_rate
    noise = pinkish + 0.3 * np.sin(2 * np.pi * 50.0 * t)
    rms = float(np.sqrt(np.mean(noise**2))) if n else 0.0
    if rms > 0.0:
        noise *= 10 ** (level_dbfs / 20.0) / rms
    return np.clip(noise, -1.0, 0.999).astype(np.float32)
