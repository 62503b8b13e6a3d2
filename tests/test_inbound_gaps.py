"""Caller audio that never arrived is appended upstream as silence, keeping the clocks equal."""

from __future__ import annotations

import base64

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio.testing import MockClock

from bridge.audio import mulaw, synth
from bridge.audio.analyzer import AnalyzerSettings, InboundAnalyzer
from bridge.core.inboundgap import FillFrame, InboundGapFiller
from bridge.sim.caller_options import CallerOptions, parse_lost_spans
from bridge.sim.script import At, CallerScript, Utterance
from tests.conftest import LogCapture
from tests.harness import start_rig

FRAME = 160  # 20 ms of μ-law


def test_contiguous_frames_and_jitter_under_a_frame_fill_nothing() -> None:
    gaps = InboundGapFiller()
    assert gaps.before(0, FRAME) is None
    assert gaps.before(20, FRAME) is None
    assert gaps.before(55, FRAME) is None  # 15 ms late: under one frame
    assert gaps.before(75, FRAME) is None


def test_a_lost_frame_is_filled_with_one_frame_of_silence() -> None:
    gaps = InboundGapFiller()
    gaps.before(0, FRAME)
    gap = gaps.before(40, FRAME)
    assert gap is not None
    assert (gap.at_ms, gap.missing_ms, gap.frames) == (20, 20, (FillFrame(20, 20),))


def test_a_gap_is_filled_in_frames_of_the_next_frames_length() -> None:
    gaps = InboundGapFiller()
    gaps.before(0, FRAME)
    gap = gaps.before(70, FRAME)
    assert gap is not None
    assert gap.frames == (FillFrame(20, 20), FillFrame(40, 20), FillFrame(60, 10))
    assert gap.filled_ms == gap.missing_ms == 50


def test_time_going_backwards_fills_nothing_and_resets() -> None:
    gaps = InboundGapFiller()
    gaps.before(1000, FRAME)
    assert gaps.before(500, FRAME) is None
    assert gaps.before(520, FRAME) is None


def test_a_gap_over_the_cap_is_filled_up_to_the_cap() -> None:
    gaps = InboundGapFiller(max_fill_ms=1000)
    gaps.before(0, FRAME)
    gap = gaps.before(15_020, FRAME)
    assert gap is not None
    assert (gap.missing_ms, gap.filled_ms, len(gap.frames)) == (15_000, 1000, 50)


@given(st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=60))
def test_filled_stream_covers_the_callers_clock_without_holes(lost_runs: list[int]) -> None:
    """Frames on a 20 ms grid with runs of lost frames: fillers plus frames tile the
    caller's clock exactly from the first frame to the last."""
    gaps = InboundGapFiller()
    t = 0
    covered = []
    for lost in lost_runs:
        gap = gaps.before(t, FRAME)
        if gap is not None:
            covered += [(f.timestamp_ms, f.duration_ms) for f in gap.frames]
        covered.append((t, 20))
        t += 20 * (1 + lost)
    position = 0
    for start, duration in covered:
        assert start == position
        position += duration


def test_analyzer_fill_keeps_the_floor_and_ends_voice_after_the_hangover() -> None:
    settings = AnalyzerSettings()
    analyzer = InboundAnalyzer(settings)
    line = mulaw.encode_float(synth.line_noise(3000, seed=3, level_dbfs=-50.0))
    speech = mulaw.encode_float(synth.speech_like(1000, seed=4, onset_attack_ms=10.0))
    stream = line[: 2000 * 8] + speech[: 300 * 8]
    released = 0
    for i in range(0, len(stream), FRAME):
        result = analyzer.process(stream[i : i + FRAME], i / 8, barge_in_active=False)
        released += len(result.release)
    assert analyzer.voice.active
    floor = analyzer.floor.floor_dbfs
    silence = mulaw.silence(20)
    for _ in range(int(settings.hangover_ms // 20) + 1):
        released += len(analyzer.fill(silence, barge_in_active=False))
    assert not analyzer.voice.active
    assert analyzer.floor.floor_dbfs == floor  # stand-in silence is not the line's level
    released += len(analyzer.flush())
    assert released == len(stream) // FRAME + int(settings.hangover_ms // 20) + 1


async def test_lost_caller_audio_reaches_the_model_as_silence_of_the_same_length(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    """Frames 3000-3500 ms never reach the bridge while the caller speaks 2500-4000 ms:
    the model gets 500 ms of silence there, and its audio clock ends equal to the
    caller's."""
    script = CallerScript(
        utterances=(Utterance(duration_ms=1500, seed=7, trigger=At(ms=2500)),), hangup=At(ms=6000)
    )
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        caller = rig.caller(script, lost_inbound_ms=((3000, 500),))
        report = await caller.run()
        handle = await rig.server.registry.wait_for_call(report.call_sid)
        await handle.ended.wait()
    session = rig.sim.sessions[0]
    assert report.media_lost == 25
    audio = b"".join(
        base64.b64decode(event["audio"])
        for _, event in session.received
        if event.get("type") == "input_audio_buffer.append"
    )
    # Every frame waited for the session, so upstream audio starts at the caller's 0 ms; at
    # the stop the gate's hold went up too, so the model got the caller's whole stream.
    caller_ms = (report.media_sent + report.media_lost) * 20
    assert len(audio) == caller_ms * 8
    assert audio[2500 * 8 : 2520 * 8] != mulaw.silence(20)  # the utterance starts in place
    assert audio[3000 * 8 : 3500 * 8] == mulaw.silence(500)
    assert audio[2980 * 8 : 3000 * 8] != mulaw.silence(20)  # speech right before the gap
    assert audio[3500 * 8 : 3520 * 8] != mulaw.silence(20)  # and right after it
    assert handle.statistics().inbound_gaps == 1
    assert handle.statistics().inbound_gap_filled_ms == 500
    [line] = logs.tagged("CALL_END", handle.call_sid)
    assert "inbound_gap_filled_ms=500" in line


def test_lost_spans_parse_from_the_command_line_form() -> None:
    assert parse_lost_spans("3000:200, 9000:60") == ((3000, 200), (9000, 60))
    assert parse_lost_spans("") == ()
    with pytest.raises(ValueError, match="START_MS:LENGTH_MS"):
        parse_lost_spans("3000")
    with pytest.raises(ValueError, match="length > 0"):
        CallerOptions(url="ws://127.0.0.1:1/x", script=CallerScript(), lost_inbound_ms=((5, 0),))
