"""Voicing: periodicity, voiced starts, the background voicing floor, and the fast onset."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.vad import Scenario, echo_of, run_scenario, transient
from bridge.audio import mulaw, synth
from bridge.audio.analyzer import AnalyzerSettings, InboundAnalyzer
from bridge.audio.vad import (
    PITCH_MAX_LAG,
    PITCH_MIN_LAG,
    VOICING_SPAN,
    VOICING_WINDOW,
    Sustain,
    Voicing,
    VoicingFloor,
    voicing,
)

SETTINGS = AnalyzerSettings()
RATE = mulaw.SAMPLE_RATE
NOISE_DBFS = -50.0


def _line(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """``samples`` as the analyzer sees them: through μ-law."""
    return mulaw.decode_float(mulaw.encode_float(np.clip(samples, -1.0, 0.999)))


def _is_start(measured: Voicing, floor_dbfs: float = NOISE_DBFS) -> bool:
    start_power = 10.0 ** ((floor_dbfs + SETTINGS.voiced_start_margin_db) / 10.0)
    return measured.is_voiced_start(
        start_power,
        min_correlation=SETTINGS.voicing_threshold,
        max_decay_db=SETTINGS.voiced_max_decay_db,
    )


def _tone(freq_hz: float, n: int = VOICING_SPAN) -> npt.NDArray[np.float64]:
    return 0.3 * np.sin(2 * np.pi * freq_hz * np.arange(n) / RATE)


def test_a_pure_tone_is_periodic_at_its_period_not_a_multiple() -> None:
    measured = voicing(_line(_tone(200.0)))
    assert measured.correlation > 0.95
    assert measured.lag == 40  # 2.5 ms; 80 and 120 samples correlate as well
    assert _is_start(measured)


def test_a_vowel_is_periodic_at_its_pitch() -> None:
    voice = dataclasses.replace(synth.CALLER_VOICE, f0_hz=150.0)
    speech = _line(synth.speech_like(1000, seed=11, voice=voice))
    ends = range(VOICING_SPAN, len(speech), 80)
    loudest = max(ends, key=lambda end: float(np.sum(speech[end - 160 : end] ** 2)))
    measured = voicing(speech[loudest - VOICING_SPAN : loudest])
    assert measured.correlation > 0.8
    # F0 drifts by up to ±20 % around 150 Hz: a period of 44-67 samples.
    assert 44 <= measured.lag <= 67


@pytest.mark.parametrize("noise_dbfs", [-60.0, -40.0])
def test_line_noise_is_not_periodic(noise_dbfs: float) -> None:
    noise = _line(synth.line_noise(5000, seed=12, level_dbfs=noise_dbfs))
    peaks = [
        voicing(noise[end - VOICING_SPAN : end]).correlation for end in range(400, 40_000, 160)
    ]
    assert max(peaks) < 0.45
    assert float(np.median(peaks)) < 0.25


def test_clicks_are_not_periodic_and_never_a_voiced_start() -> None:
    rng = np.random.default_rng(13)
    peaks = []
    for i in range(100):
        window = synth.line_noise(40, seed=i, level_dbfs=NOISE_DBFS).astype(np.float64)
        n, at = int(rng.integers(8, 321)), int(rng.integers(0, VOICING_SPAN))
        click = 0.1 * transient("click", n, rng)[: VOICING_SPAN - at]
        window[at : at + len(click)] += click
        measured = voicing(_line(window[:VOICING_SPAN]))
        peaks.append(measured.correlation)
        assert not _is_start(measured)
    assert float(np.median(peaks)) < 0.3


def test_a_ringing_thud_is_periodic_but_decays_so_it_is_no_voiced_start() -> None:
    t = np.arange(VOICING_SPAN) / RATE
    # Struck just before the lags the window reaches back to: as periodic as it gets.
    window = 0.3 * np.exp(-t / 0.013) * np.sin(2 * np.pi * 150.0 * t)
    window += synth.line_noise(40, seed=14, level_dbfs=NOISE_DBFS)[:VOICING_SPAN]
    measured = voicing(_line(window))
    assert measured.correlation > 0.9
    assert measured.loudest_power == pytest.approx(measured.first_power)
    assert measured.last_power < measured.loudest_power / 4.0  # over 6 dB of decay
    assert not _is_start(measured)


def test_a_tone_starting_late_in_the_window_is_no_voiced_start_yet() -> None:
    noise = synth.line_noise(40, seed=15, level_dbfs=NOISE_DBFS)[:VOICING_SPAN]
    late = noise.astype(np.float64)
    late[-60:] += _tone(200.0, 60)
    assert not _is_start(voicing(_line(late)))  # its first period is still the line's noise
    early = noise.astype(np.float64)
    early[-VOICING_WINDOW - PITCH_MAX_LAG :] += _tone(200.0, VOICING_WINDOW + PITCH_MAX_LAG)
    assert _is_start(voicing(_line(early)))


def test_too_few_samples_or_silence_give_no_voicing() -> None:
    short = _line(_tone(200.0, VOICING_WINDOW + PITCH_MIN_LAG))
    assert voicing(short) == Voicing(0.0, 0, 0.0, 0.0, 0.0)
    assert voicing(np.zeros(VOICING_SPAN, dtype=np.float32)).correlation == 0.0
    # The shortest lags need only PITCH_MIN_LAG + 1 samples before the window.
    assert voicing(_line(_tone(400.0, VOICING_WINDOW + PITCH_MIN_LAG + 1))).lag == PITCH_MIN_LAG


@given(st.binary(max_size=2 * VOICING_SPAN))
def test_voicing_is_finite_and_in_range_for_any_bytes(payload: bytes) -> None:
    measured = voicing(mulaw.decode_float(payload))
    assert -1.0 - 1e-4 <= measured.correlation <= 1.0 + 1e-4
    assert measured.lag == 0 or PITCH_MIN_LAG <= measured.lag <= PITCH_MAX_LAG
    assert 0.0 <= measured.first_power <= measured.loudest_power
    assert 0.0 <= measured.last_power <= measured.loudest_power


def test_sustain_start_is_an_edge_once_and_rearms_the_hangover() -> None:
    sustain = Sustain(min_run_ms=60.0, hangover_ms=300.0)
    assert sustain.start()
    assert not sustain.start()
    sustain.update(False, 290.0)
    assert sustain.active
    assert not sustain.start()  # a voiced frame late in the hangover continues it
    sustain.update(False, 290.0)
    assert sustain.active


def test_voicing_floor_keeps_the_fixed_threshold_on_line_noise_and_rises_on_rumble() -> None:
    least, sigmas = SETTINGS.voicing_threshold, SETTINGS.voicing_noise_sigmas
    line = VoicingFloor()
    noise = _line(synth.line_noise(10_000, seed=16, level_dbfs=-45.0))
    for end in range(VOICING_SPAN, len(noise), 640):
        line.update(voicing(noise[end - VOICING_SPAN : end]).correlation)
    assert line.threshold(least, sigmas) == least
    rumble = VoicingFloor()
    for correlation in (0.6, 0.2, 0.7, 0.3, 0.5):  # spurious peaks of low-pass noise
        rumble.update(correlation)
    assert rumble.threshold(least, sigmas) > 0.8
    assert rumble.measured == 5


def _burst_over_noise(snr_db: float, *, seed: int, speech_ms: int = 1200) -> tuple[Scenario, float]:
    """Noise with one caller burst at 2 s; the scenario and the burst's true onset (ms)."""
    noise = synth.line_noise(4000, seed=seed, level_dbfs=NOISE_DBFS)
    voice = dataclasses.replace(synth.CALLER_VOICE, level_dbfs=NOISE_DBFS + snr_db)
    speech = synth.speech_like(speech_ms, seed=seed + 1, voice=voice)
    samples = noise.copy()
    samples[16000 : 16000 + len(speech)] += speech
    onset_ms = 2000.0 + float(np.flatnonzero(speech)[0]) / mulaw.BYTES_PER_MS
    frames = (False,) * (len(samples) // 160)
    scenario = Scenario("burst", "test", mulaw.encode_float(samples), b"", (), (), frames)
    return scenario, onset_ms


@pytest.mark.parametrize("seed", [20, 30, 40])
def test_a_voiced_burst_at_20_db_snr_is_detected_within_60_ms(seed: int) -> None:
    scenario, onset_ms = _burst_over_noise(20.0, seed=seed)
    trace = run_scenario(scenario, SETTINGS)
    assert len(trace.onsets_ms) == 1
    assert onset_ms < trace.onsets_ms[0] <= onset_ms + 60.0
    energy_only = run_scenario(scenario, dataclasses.replace(SETTINGS, voiced_onset=False))
    assert energy_only.onsets_ms[0] >= trace.onsets_ms[0] + SETTINGS.min_onset_ms / 2


def test_the_onset_frame_reports_its_voiced_start() -> None:
    scenario, _ = _burst_over_noise(20.0, seed=50)
    analyzer = InboundAnalyzer(SETTINGS)
    inbound = scenario.inbound
    results = [
        analyzer.process(inbound[i : i + 160], i / 8, barge_in_active=False)
        for i in range(0, len(inbound), 160)
    ]
    onsets = [r for r in results if r.onset]
    assert len(onsets) == 1
    assert onsets[0].voiced
    assert onsets[0].voice


@pytest.mark.parametrize("kind", ["click", "knock", "thud"])
def test_transients_of_up_to_40_ms_do_not_trigger(kind: str) -> None:
    rng = np.random.default_rng(60)
    samples = synth.line_noise(10_000, seed=61, level_dbfs=NOISE_DBFS).astype(np.float64)
    for start in range(4000, 76_000, 4000):  # every 0.5 s, 1-40 ms, 20-40 dB over the noise
        n = int(rng.integers(8, 321))
        samples[start : start + n] += 10 ** (rng.uniform(-30.0, -10.0) / 20) * transient(
            kind, n, rng
        )
    frames = (False,) * (len(samples) // 160)
    scenario = Scenario(kind, "test", mulaw.encode_float(samples), b"", (), (), frames)
    assert run_scenario(scenario, SETTINGS).onsets_ms == ()
    # The duration rule is what rejects them on the energy path: 20 ms would not.
    short = dataclasses.replace(SETTINGS, min_onset_ms=20.0)
    assert run_scenario(scenario, short).onsets_ms != ()


def test_low_frequency_rumble_does_not_trigger_and_raises_the_voicing_threshold() -> None:
    white = np.random.default_rng(70).normal(0.0, 1.0, 10 * RATE)
    rumble = np.convolve(white, 0.9 ** np.arange(110))[: len(white)]
    rumble *= 10 ** (-45.0 / 20) / float(np.sqrt(np.mean(rumble**2)))
    payload = mulaw.encode_float(rumble)
    analyzer = InboundAnalyzer(SETTINGS)
    onsets = [
        analyzer.process(payload[i : i + 160], i / 8, barge_in_active=False).onset
        for i in range(0, len(payload), 160)
    ]
    assert not any(onsets)
    threshold = analyzer.voicing_floor.threshold(
        SETTINGS.voicing_threshold, SETTINGS.voicing_noise_sigmas
    )
    assert threshold > SETTINGS.voicing_threshold + 0.1


def test_history_follows_jittered_stamps_and_is_dropped_after_a_gap() -> None:
    analyzer = InboundAnalyzer(SETTINGS)
    frames = [bytes([i]) * 160 for i in range(4)]
    analyzer.process(frames[0], 0.0, barge_in_active=False)
    analyzer.process(frames[1], 21.0, barge_in_active=False)  # 1 ms of stamp jitter
    assert analyzer.history == frames[0][-(VOICING_SPAN - 160) :] + frames[1]
    analyzer.process(frames[2], 100.0, barge_in_active=False)  # frames lost
    assert analyzer.history == frames[2]
    analyzer.process(frames[3], 120.0, barge_in_active=False)
    assert analyzer.history == (frames[2] + frames[3])[-VOICING_SPAN:]


@pytest.mark.parametrize("attenuation_db", [-6.0, -10.0])
def test_echo_of_the_ai_voice_is_periodic_but_no_onset(attenuation_db: float) -> None:
    ai = np.zeros(8 * RATE, dtype=np.float32)
    ai[RATE // 2 : RATE // 2 + 6 * RATE] = synth.speech_like(6000, seed=80, voice=synth.AI_VOICE)
    outbound = mulaw.encode_float(ai)
    line = echo_of(outbound, 120, attenuation_db) + synth.line_noise(
        8000, seed=81, level_dbfs=-55.0
    )
    frames = (False,) * (len(line) // 160)
    scenario = Scenario("echo", "test", mulaw.encode_float(line), outbound, (), (), frames)
    assert run_scenario(scenario, SETTINGS).onsets_ms == ()
    unguarded = dataclasses.replace(SETTINGS, echo_guard=False)
    assert run_scenario(scenario, unguarded).onsets_ms != ()
