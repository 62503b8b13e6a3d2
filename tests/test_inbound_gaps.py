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
from bridge.core.inboundgap import (
    DEFAULT_MAX_FILL_MS,
    FILL_AHEAD_MS,
    FillFrame,
    InboundGapFiller,
)
from bridge.core.signature import compute_signature
from bridge.sim import wire
from bridge.sim.caller_options import CallerOptions, parse_lost_spans
from bridge.sim.script import At, CallerScript, Utterance
from tests.conftest import LogCapture
from tests.harness import AUTH_TOKEN, start_rig
from tests.wsclient import connect

FRAME = 160  # 20 ms of μ-law


# Each frame is taken at the wall time its timestamp says (seconds), unless a test says.


def test_contiguous_frames_and_jitter_under_a_frame_fill_nothing() -> None:
    gaps = InboundGapFiller()
    assert gaps.before(0, FRAME, 0.0) is None
    assert gaps.before(20, FRAME, 20 / 1000) is None
    assert gaps.before(55, FRAME, 55 / 1000) is None  # 15 ms late: under one frame
    assert gaps.before(75, FRAME, 75 / 1000) is None


def test_a_lost_frame_is_filled_with_one_frame_of_silence() -> None:
    gaps = InboundGapFiller()
    gaps.before(0, FRAME, 0.0)
    gap = gaps.before(40, FRAME, 40 / 1000)
    assert gap is not None
    assert (gap.at_ms, gap.missing_ms, gap.frames) == (20, 20, (FillFrame(20, 20),))


def test_a_gap_is_filled_in_frames_of_the_next_frames_length() -> None:
    gaps = InboundGapFiller()
    gaps.before(0, FRAME, 0.0)
    gap = gaps.before(70, FRAME, 70 / 1000)
    assert gap is not None
    assert gap.frames == (FillFrame(20, 20), FillFrame(40, 20), FillFrame(60, 10))
    assert gap.filled_ms == gap.missing_ms == 50


def test_time_going_backwards_fills_nothing_and_resets() -> None:
    gaps = InboundGapFiller()
    gaps.before(1000, FRAME, 1000 / 1000)
    assert gaps.before(500, FRAME, 1.02) is None
    assert gaps.before(520, FRAME, 1.04) is None


def test_a_gap_over_the_cap_is_filled_up_to_the_cap() -> None:
    gaps = InboundGapFiller(max_fill_ms=1000)
    gaps.before(0, FRAME, 0.0)
    gap = gaps.before(15_020, FRAME, 15_020 / 1000)
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
        gap = gaps.before(t, FRAME, t / 1000)
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


# -- the wall-time bound ---------------------------------------------------------------------


def test_timestamps_racing_ahead_of_wall_time_get_no_more_silence_than_wall_time() -> None:
    """The issue's case: 100 frames stamped 10 s apart, sent 20 ms apart (2 s of wall
    time). Per gap they would have filled 549 s; the call's budget allows under 3 s."""
    gaps = InboundGapFiller()
    filled = [g.filled_ms for i in range(100) if (g := gaps.before(i * 10_000, FRAME, i * 0.02))]
    assert len(filled) == 99  # every gap is seen (and counted by the gate stage)...
    assert sum(filled) == 99 * 20 + FILL_AHEAD_MS  # ...but filled only as wall time allows


def test_timestamps_jumping_back_and_forth_do_not_renew_the_budget() -> None:
    gaps = InboundGapFiller()
    filled = 0
    for i in range(200):
        gap = gaps.before(10_000 * (i % 2), FRAME, i * 0.02)
        filled += gap.filled_ms if gap is not None else 0
    assert filled <= 199 * 20 + FILL_AHEAD_MS


@given(
    st.lists(
        st.tuples(st.integers(-30_000, 60_000), st.integers(0, 2_000)), min_size=1, max_size=80
    )
)
def test_silence_filled_never_exceeds_wall_time_plus_the_slack(
    steps: list[tuple[int, int]],
) -> None:
    """Any timestamps and arrival times: per gap at most the cap and what is missing; per
    call at most the wall time since the first frame plus FILL_AHEAD_MS."""
    gaps = InboundGapFiller()
    timestamp, wall_ms, filled = 0, 0, 0
    for step_ms, wall_step_ms in steps:
        timestamp = max(0, timestamp + step_ms)
        wall_ms += wall_step_ms
        gap = gaps.before(timestamp, FRAME, wall_ms / 1000)
        if gap is not None:
            assert gap.filled_ms <= min(gap.missing_ms, DEFAULT_MAX_FILL_MS)
            filled += gap.filled_ms
        assert filled <= wall_ms + FILL_AHEAD_MS


async def test_a_peer_racing_its_timestamps_gets_bounded_silence_upstream(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    """End to end: the same 100 frames over a real stream, 2 s of wall time."""
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        url = f"wss://{rig.server.host}:{rig.server.port}/twilio/media"
        signature = compute_signature(AUTH_TOKEN, url).encode()
        call_sid, stream_sid = wire.new_sid("CA"), wire.new_sid("MZ")
        async with connect(rig.server.media_url, [(b"x-twilio-signature", signature)]) as ws:
            await ws.send_message(wire.encode(wire.connected()))
            start = wire.start(
                sequence=1,
                stream_sid=stream_sid,
                call_sid=call_sid,
                account_sid="AC1",
                custom_parameters={},
            )
            await ws.send_message(wire.encode(start))
            for i in range(100):
                media = wire.media(
                    sequence=2 + i,
                    stream_sid=stream_sid,
                    chunk=1 + i,
                    timestamp_ms=i * 10_000,
                    payload=mulaw.silence(20),
                )
                await ws.send_message(wire.encode(media))
                await trio.sleep(0.02)  # Twilio's pace; the stamps say 10 s each
            stop = wire.stop(
                sequence=102, stream_sid=stream_sid, account_sid="AC1", call_sid=call_sid
            )
            await ws.send_message(wire.encode(stop))
            handle = await rig.server.registry.wait_for_call(call_sid)
            await handle.ended.wait()
    statistics = handle.statistics()
    assert statistics.inbound_gaps >= 40
    assert statistics.inbound_gap_filled_ms <= 2000 + FILL_AHEAD_MS
    audio_ms = sum(
        len(base64.b64decode(event["audio"])) // 8
        for _, event in rig.sim.sessions[0].received
        if event.get("type") == "input_audio_buffer.append"
    )
    assert audio_ms <= 100 * 20 + 2000 + FILL_AHEAD_MS  # the frames, and bounded silence
