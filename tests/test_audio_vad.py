"""Noise floor, sustained voice with hangover, DTMF rejection, and the analyzer's decisions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.vad import Scenario, run_scenario
from bridge.audio import level, mulaw, synth
from bridge.audio.analyzer import AnalyzerSettings, InboundAnalyzer
from bridge.audio.vad import DTMF_COLUMNS_HZ, DTMF_ROWS_HZ, NoiseFloor, Sustain, is_dual_tone

SETTINGS = AnalyzerSettings()


def _floor() -> NoiseFloor:
    return NoiseFloor(
        floor_dbfs=SETTINGS.initial_floor_dbfs,
        fall_tau_ms=SETTINGS.floor_fall_tau_ms,
        rise_db_per_s=SETTINGS.floor_rise_db_per_s,
        min_dbfs=SETTINGS.floor_min_dbfs,
        max_dbfs=SETTINGS.floor_max_dbfs,
    )


def _scenario(samples: np.ndarray, bursts: tuple[tuple[float, float], ...] = ()) -> Scenario:
    frames = len(samples) // 160
    return Scenario("test", "test", mulaw.encode_float(samples), b"", bursts, (), (False,) * frames)


def test_floor_falls_to_a_quiet_line_within_150_ms() -> None:
    floor = _floor()
    for _ in range(15):
        floor.update(-62.0, 10.0)
    assert floor.floor_dbfs == pytest.approx(-62.0, abs=1.0)


def test_floor_rises_no_faster_than_its_rate() -> None:
    floor = _floor()
    floor.floor_dbfs = -60.0
    for _ in range(100):  # one second of loud blocks
        floor.update(-20.0, 10.0)
    assert floor.floor_dbfs == pytest.approx(-60.0 + SETTINGS.floor_rise_db_per_s, abs=1e-9)


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=-200.0, max_value=50.0, allow_nan=False),
            st.floats(min_value=0.125, max_value=1000.0),
        ),
        max_size=200,
    )
)
def test_floor_stays_within_its_bounds(blocks: list[tuple[float, float]]) -> None:
    floor = _floor()
    for level_dbfs, duration_ms in blocks:
        value = floor.update(level_dbfs, duration_ms)
        assert SETTINGS.floor_min_dbfs <= value <= SETTINGS.floor_max_dbfs


def test_sustain_needs_an_unbroken_run_then_holds_through_the_hangover() -> None:
    sustain = Sustain(min_run_ms=60.0, hangover_ms=300.0)
    # Two blocks, a gap, two blocks: a click pattern never reaches 60 ms.
    edges = [sustain.update(c, 10.0) for c in (True, True, False, True, True, False)]
    assert not any(edges)
    assert not sustain.active
    edges = [sustain.update(True, 10.0) for _ in range(6)]
    assert edges == [False] * 5 + [True]
    for _ in range(29):
        sustain.update(False, 10.0)
    assert sustain.active  # 290 ms of the 300 ms hangover used
    sustain.update(False, 10.0)
    assert not sustain.active


@pytest.mark.parametrize("row", DTMF_ROWS_HZ)
@pytest.mark.parametrize("column", DTMF_COLUMNS_HZ)
def test_every_dtmf_key_is_a_dual_tone(row: float, column: float) -> None:
    t = np.arange(160) / mulaw.SAMPLE_RATE
    tone = 0.05 * np.sin(2 * np.pi * row * t) + 0.06 * np.sin(2 * np.pi * column * t)
    payload = mulaw.encode_float(tone)
    assert is_dual_tone(payload, level.frame_power(payload))


@pytest.mark.parametrize("voice", [synth.CALLER_VOICE, synth.AI_VOICE, synth.Voice(f0_hz=95.0)])
def test_voiced_speech_is_never_a_dual_tone(voice: synth.Voice) -> None:
    payload = mulaw.encode_float(synth.speech_like(8000, seed=5, voice=voice))
    frames = [payload[i : i + 160] for i in range(0, len(payload) - 159, 160)]
    assert not any(is_dual_tone(f, level.frame_power(f)) for f in frames)


def test_long_payloads_are_judged_on_their_last_40_ms() -> None:
    t = np.arange(800) / mulaw.SAMPLE_RATE
    tone = mulaw.encode_float(
        0.05 * np.sin(2 * np.pi * 941.0 * t) + 0.05 * np.sin(2 * np.pi * 1477.0 * t)
    )
    voiced = mulaw.encode_float(synth.speech_like(1000, seed=9))
    loudest = max(range(0, 8000 - 320, 80), key=lambda i: level.frame_power(voiced[i : i + 320]))
    speech = voiced[loudest : loudest + 320]
    assert is_dual_tone(tone, level.frame_power(tone))
    mixed = tone[:480] + speech
    assert not is_dual_tone(mixed, level.frame_power(mixed))


def test_noise_and_short_frames_are_not_dual_tones() -> None:
    noise = mulaw.encode_float(synth.line_noise(20, seed=1, level_dbfs=-30.0))
    assert not is_dual_tone(noise, level.frame_power(noise))
    assert not is_dual_tone(b"\x00" * 40, 1.0)
    assert not is_dual_tone(b"\xff" * 160, 0.0)


def test_speech_over_noise_gives_one_onset_soon_after_it_starts() -> None:
    noise = synth.line_noise(4000, seed=2, level_dbfs=-50.0)
    speech = synth.speech_like(1200, seed=3, voice=dataclasses.replace(synth.CALLER_VOICE))
    samples = noise.copy()
    samples[16000 : 16000 + len(speech)] += speech
    trace = run_scenario(_scenario(samples), SETTINGS)
    assert len(trace.onsets_ms) == 1
    # A voiced start: the attack plus up to one frame (bench.vad at 20 dB SNR: p95 43-51 ms).
    assert 2000.0 < trace.onsets_ms[0] <= 2000.0 + 60.0
    energy_only = run_scenario(
        _scenario(samples), dataclasses.replace(SETTINGS, voiced_onset=False)
    )
    assert len(energy_only.onsets_ms) == 1
    # min_onset_ms plus the attack and one frame of granularity (bench.vad: p95 ~95 ms).
    assert 2000.0 + SETTINGS.min_onset_ms <= energy_only.onsets_ms[0] <= 2000.0 + 120.0


@pytest.mark.parametrize("noise_dbfs", [-60.0, -40.0, -30.0])
def test_stationary_noise_never_triggers_and_the_floor_learns_it(noise_dbfs: float) -> None:
    payload = mulaw.encode_float(synth.line_noise(10_000, seed=4, level_dbfs=noise_dbfs))
    analyzer = InboundAnalyzer(SETTINGS)
    results = [
        analyzer.process(payload[i : i + 160], i / 8, barge_in_active=False)
        for i in range(0, len(payload), 160)
    ]
    assert not any(r.onset or r.voice for r in results)
    assert results[-1].floor_dbfs == pytest.approx(noise_dbfs, abs=2.0)


def test_dtmf_keys_do_not_trigger() -> None:
    samples = synth.line_noise(3000, seed=6, level_dbfs=-50.0)
    t = np.arange(800) / mulaw.SAMPLE_RATE
    for key in range(8):
        tone = 0.1 * np.sin(2 * np.pi * 852.0 * t) + 0.12 * np.sin(2 * np.pi * 1336.0 * t)
        start = 4000 + key * 1600
        samples[start : start + 800] += tone.astype(np.float32)
    assert run_scenario(_scenario(samples), SETTINGS).onsets_ms == ()
    unguarded = dataclasses.replace(SETTINGS, reject_tones=False)
    assert run_scenario(_scenario(samples), unguarded).onsets_ms != ()


@pytest.mark.parametrize(
    "change",
    [
        {"prefix_ms": -1.0},
        {"min_onset_ms": 0.0},
        {"margin_db": -3.0},
        {"echo_max_delay_ms": 405},
        {"voiced_margin_db": -1.0},
        {"voiced_max_decay_db": -1.0},
        {"voicing_noise_sigmas": -1.0},
    ],
)
def test_settings_reject_impossible_values(change: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        dataclasses.replace(SETTINGS, **change)


def test_without_outbound_audio_onset_is_the_rising_edge_of_voice() -> None:
    samples = synth.line_noise(6000, seed=7, level_dbfs=-45.0)
    speech = synth.speech_like(3000, seed=8)
    samples[8000 : 8000 + len(speech)] += speech
    payload = mulaw.encode_float(samples)
    analyzer = InboundAnalyzer(SETTINGS)
    previous = False
    for i in range(0, len(payload), 160):
        result = analyzer.process(payload[i : i + 160], i / 8, barge_in_active=False)
        assert result.onset == (result.voice and not previous)
        assert result.residual_dbfs == pytest.approx(result.level_dbfs)
        assert not result.echo_explained
        previous = result.voice
