"""Echo guard: envelopes on the caller's axis, the prior, the estimate, the onset guard."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from bench.vad import Scenario, echo_of, run_scenario
from bridge.audio import level, mulaw, synth
from bridge.audio.analyzer import AnalyzerSettings
from bridge.audio.echo import _RING_BINS, EchoGuard, Envelope
from bridge.core.gate import GateStage
from bridge.core.stats import CallCounters
from bridge.core.twilio import Media

SETTINGS = AnalyzerSettings()


def test_envelope_reads_fill_where_nothing_was_written_and_wraps_around() -> None:
    envelope = Envelope(math.nan)
    envelope.advance(_RING_BINS - 3)
    envelope.put(_RING_BINS - 2, np.array([1.0, 2.0, 3.0, 4.0]), accumulate=False)
    values = envelope.read(_RING_BINS - 3, 6)
    assert np.isnan(values[0])
    assert values[1:5].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert np.isnan(values[5])


def test_envelope_retires_old_bins_and_accumulates() -> None:
    envelope = Envelope(0.0)
    envelope.put(10, np.array([1.0, 1.0]), accumulate=True)
    envelope.put(11, np.array([2.0]), accumulate=True)
    assert envelope.read(10, 2).tolist() == [1.0, 3.0]
    envelope.advance(11)
    assert envelope.read(10, 2).tolist() == [0.0, 3.0]
    envelope.advance(11 + _RING_BINS)  # a long quiet gap: everything retired
    assert not envelope.read(11 + _RING_BINS - 1, 3).any()
    envelope.reset(11 + _RING_BINS, 11 + _RING_BINS + 5)  # resetting empty bins is harmless


@pytest.mark.parametrize("play_start_ms", [0.0, 3.0, 17.125, 1234.5])
def test_outbound_energy_lands_in_the_right_bins(play_start_ms: float) -> None:
    guard = EchoGuard()
    payload = mulaw.encode_float(synth.speech_like(200, seed=1, voice=synth.AI_VOICE))
    guard.note_outbound(payload, play_start_ms)
    first = math.floor(play_start_ms / 10)
    stored = guard.outbound.read(first, 22)
    energy = level.sample_powers(payload).sum()
    assert stored.sum() * 80 == pytest.approx(energy)
    assert guard.out_first_bin == first
    assert guard.out_last_bin == math.floor((play_start_ms + 200 - 0.125) / 10)


def test_no_echo_without_outbound_audio_in_reach() -> None:
    guard = EchoGuard()
    quiet = np.zeros(2)
    assert not guard.record(1000.0, quiet)
    guard.note_outbound(b"\x80" * 160, 1000.0)
    assert not guard.record(980.0, quiet)  # plays after the frame
    assert guard.record(1000.0, quiet)
    assert guard.bound(2)[0] > 0.0
    assert not guard.record(1420.0, quiet)  # more than 400 ms later
    assert guard.bound(2) == [0.0, 0.0]


def test_before_an_estimate_the_bound_is_the_prior_at_the_worst_delay() -> None:
    guard = EchoGuard()
    loud = mulaw.encode_float(np.full(160, 0.1))
    guard.note_outbound(loud, 1000.0)
    assert guard.record(1300.0, np.zeros(2))
    bound = guard.bound(2)
    prior = 10 ** ((guard.margin_db - guard.prior_erl_db) / 10)
    assert bound == pytest.approx([prior * level.frame_power(loud)] * 2)
    assert not guard.estimated


def test_cleared_playback_produces_no_echo_bound_after_it() -> None:
    guard = EchoGuard()
    guard.note_outbound(b"\x80" * 8000, 1000.0)  # 1 s of loud audio from t = 1000 ms
    guard.note_cleared(1200.0)
    assert guard.out_last_bin == 119
    assert guard.outbound.read(120, 80).sum() == 0.0
    assert not guard.record(1700.0, np.zeros(2))


def _echo_line(delay_ms: int, attenuation_db: float, seconds: int = 6) -> tuple[bytes, bytes]:
    ai = synth.speech_like(seconds * 1000, seed=21, voice=synth.AI_VOICE)
    outbound = mulaw.encode_float(ai)
    noise = synth.line_noise(seconds * 1000, seed=22, level_dbfs=-55.0)
    inbound = mulaw.encode_float(echo_of(outbound, delay_ms, attenuation_db) + noise)
    return outbound, inbound


@pytest.mark.parametrize("delay_ms", [40, 120, 250])
@pytest.mark.parametrize("attenuation_db", [-6.0, -20.0])
def test_the_estimate_finds_the_echo_delay_and_bounds_its_gain(
    delay_ms: int, attenuation_db: float
) -> None:
    outbound, inbound = _echo_line(delay_ms, attenuation_db)
    guard = EchoGuard()
    for start in range(0, len(inbound), 160):
        t_ms = start / 8
        guard.note_outbound(outbound[start : start + 160], t_ms)
        guard.record(t_ms, level.block_powers(inbound[start : start + 160]))
    assert guard.estimated
    gains_db = 10 * np.log10(guard.bound_gains[::-1]) - guard.margin_db
    assert abs(int(np.argmax(gains_db)) * 10 - delay_ms) <= 10
    # Close to the true gain: the 20th percentile of the per-bin ratio sits up to ~2 dB
    # under it (the colouring spreads the ratio), which the 6 dB margin covers.
    assert attenuation_db - 2.0 <= gains_db.max() <= attenuation_db + 3.0


def _scenario(outbound: bytes, inbound: bytes, bursts: tuple[tuple[float, float], ...]) -> Scenario:
    return Scenario("t", "echo", inbound, outbound, bursts, (), (False,) * (len(inbound) // 160))


@pytest.mark.parametrize("delay_ms", [40, 120, 250])
def test_echo_at_minus_10_db_does_not_trigger_the_onset(delay_ms: int) -> None:
    outbound, inbound = _echo_line(delay_ms, -10.0)
    assert run_scenario(_scenario(outbound, inbound, ()), SETTINGS).onsets_ms == ()
    unguarded = dataclasses.replace(SETTINGS, echo_guard=False)
    assert run_scenario(_scenario(outbound, inbound, ()), unguarded).onsets_ms != ()


def test_caller_talking_over_the_echo_triggers_the_onset() -> None:
    outbound, inbound = _echo_line(120, -10.0)
    samples = mulaw.decode_float(inbound).copy()
    caller = synth.speech_like(1000, seed=23)
    samples[3000 * 8 : 3000 * 8 + len(caller)] += caller
    scenario = _scenario(outbound, mulaw.encode_float(samples), ((3000.0, 4000.0),))
    onsets = run_scenario(scenario, SETTINGS).onsets_ms
    assert len(onsets) == 1
    # Double talk is slower than a quiet line (bench.vad: p95 up to ~180 ms at -10 dB).
    assert 3000.0 < onsets[0] <= 3200.0


def _stage_onsets(*, note_playout: bool) -> bool:
    """A call's gate stage hears its own AI audio come back at -10 dB (no caller speech);
    whether the echo produced an onset."""
    stage = GateStage(CallCounters(), gate_enabled=True, server_silence_ms=500)
    noise = mulaw.encode_float(synth.line_noise(3000, seed=31, level_dbfs=-55.0))
    ai = mulaw.encode_float(synth.speech_like(2000, seed=32, voice=synth.AI_VOICE))
    echo = mulaw.encode_float(
        echo_of(ai, 0, -10.0) + synth.line_noise(2000, seed=33, level_dbfs=-55.0)
    )
    onset = False
    for k in range(150):  # 3 s of line noise first: the floor settles
        stage.note_caller_time(k * 20, k * 0.02)
        frame = Media(noise[k * 160 : (k + 1) * 160], k * 20)
        onset |= stage.process(frame, barge_in_active=False, now=k * 0.02).onset
    assert not onset
    for i in range(0, len(ai), 160):
        k = 150 + i // 160
        now = k * 0.02
        stage.note_caller_time(k * 20, now)
        if note_playout:
            stage.note_playout(ai[i : i + 160], now)  # plays as the frame carrying it is taken
        onset |= stage.process(
            Media(echo[i : i + 160], k * 20), barge_in_active=False, now=now
        ).onset
    return onset


def test_playout_reaches_the_echo_guard_before_the_frame_carrying_its_echo() -> None:
    # The stage notes playout lazily, when it judges the next caller frame: that frame
    # must already be judged against it.
    assert _stage_onsets(note_playout=False)  # the echo alone reads as the caller
    assert not _stage_onsets(note_playout=True)
