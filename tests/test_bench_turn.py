"""The turn bench (``bench/turn/``): its metrics on synthetic observations with known
answers, the typed log reading, and one short call end to end."""

from __future__ import annotations

import base64
import dataclasses
import io
from pathlib import Path

import numpy as np
from loguru import logger

from bench.common.bridge_log import parse_log, records
from bench.common.calls import CallRun
from bench.common.cpu import cpu_per_call
from bench.common.scenario import run_scenario
from bench.common.wire import SentFrame, SentMedia, WirePlayback
from bench.turn.analysis import analyse, analyse_call, compare_gate
from bench.turn.inbound import (
    Append,
    arrival_times,
    caller_clock_offset,
    frame_holding,
    speech_ends_ms,
    unforwarded_tail_ms,
)
from bench.turn.plan import SIM_OPTIONS, TurnPlan, bridge_settings
from bridge.audio import mulaw
from bridge.core.actions import Truncation
from bridge.core.records import BargeInReport, CallFinished, report
from bridge.core.stats import CallCounters
from bridge.logs import log_action
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.report import CallRecorder, WireCounters
from bridge.sim.script import CallerScript
from bridge.sim.upstream import SimSession
from bridge.sim.upstream_conversation import ResponseRecord
from bridge.sim.upstream_session import SessionSettings, UpstreamSession

FRAME_MS = 20
SPEECH_MS = (200, 600)
"""A tone from 200 to 600 ms on the caller's clock: the VAD's last speech window ends at 600."""
APPEND_DELAY_S = 0.002
REPLY_DELAY_S = 0.001


def _frames(total_ms: int = 2000) -> list[SentFrame]:
    """The caller's frames, each sent at the end of its audio (as the sim caller does)."""
    t = np.arange(total_ms * 8) / 8000.0
    audio = np.where((t >= SPEECH_MS[0] / 1000) & (t < SPEECH_MS[1] / 1000), 0.3, 0.0)
    ulaw = mulaw.encode_float((audio * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32))
    step = FRAME_MS * mulaw.BYTES_PER_MS
    return [
        SentFrame((ms + FRAME_MS) / 1000.0, ms, ulaw[ms * 8 : ms * 8 + step])
        for ms in range(0, total_ms, FRAME_MS)
    ]


def _appends(frames: list[SentFrame], skip_first: int, skip_last: int) -> list[Append]:
    """One append per frame, APPEND_DELAY_S after it was sent; the first frames never
    reached the session, nor the last ones."""
    kept = frames[skip_first : len(frames) - skip_last]
    return [Append(f.t + APPEND_DELAY_S, i * FRAME_MS, f.payload) for i, f in enumerate(kept)]


def test_offset_between_the_clocks_is_found_from_the_audio() -> None:
    frames = _frames()
    assert caller_clock_offset(frames, _appends(frames, 2, 0)) == 40.0
    assert caller_clock_offset(frames, _appends(frames, 0, 0)) == 0.0
    silent = [dataclasses.replace(a, audio=b"\xff" * len(a.audio)) for a in _appends(frames, 0, 0)]
    assert caller_clock_offset(frames, silent) is None


def test_arrival_is_the_append_holding_the_frames_last_byte() -> None:
    frames = _frames()
    appends = _appends(frames, 2, 5)
    arrivals = arrival_times(frames, appends, 40.0)
    assert arrivals[:2] == [None, None]
    assert arrivals[2] == frames[2].t + APPEND_DELAY_S
    assert arrivals[-6] == frames[-6].t + APPEND_DELAY_S
    assert arrivals[-5:] == [None] * 5
    # Two frames in one append arrive together.
    merged = [Append(1.0, 0.0, frames[0].payload + frames[1].payload)]
    assert arrival_times(frames[:2], merged, 0.0) == [1.0, 1.0]


def test_speech_end_is_the_last_window_the_server_vad_hears() -> None:
    frames = _frames()
    assert speech_ends_ms(frames, threshold=0.5, onset_ms=150, silence_ms=500) == [600.0]
    # The tail must last the whole silence before the turn ends.
    assert speech_ends_ms(frames[:50], threshold=0.5, onset_ms=150, silence_ms=500) == []
    assert frame_holding(frames, 600.0) == 29
    assert frame_holding(frames, 590.0) == 29
    assert frame_holding(frames, 601.0) == 30


def test_unforwarded_tail_is_measured_on_the_callers_clock() -> None:
    frames = _frames()
    assert unforwarded_tail_ms(frames, _appends(frames, 2, 5), 40.0) == 100.0
    assert unforwarded_tail_ms(frames, _appends(frames, 0, 0), 0.0) == 0.0


def _turn_call() -> tuple[CallRun[TurnPlan], SimSession]:
    """One turn with known delays: appends 2 ms after each frame, the model answering
    500 ms of input audio after the speech ended, its first frame at the caller 1 ms later."""
    frames = _frames()
    sent = SentMedia()
    sent.frames.extend(frames)
    session = SimSession(0, "/", UpstreamSession(SessionSettings()), 0.0)
    audio_in = session.session["audio"]["input"]
    audio_in["format"] = {"type": "audio/pcmu"}
    audio_in["turn_detection"]["silence_duration_ms"] = 500
    for a in _appends(frames, 2, 5):
        session.received.append(
            (
                a.t,
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(a.audio).decode()},
            )
        )
    # The append carrying input position 1100 - 40 ms arrives at 1.100 + 2 ms.
    answered = 1.1 + APPEND_DELAY_S
    session.sent.append((answered, {"type": "input_audio_buffer.speech_stopped"}))
    session.sent.append((answered, {"type": "response.output_audio.delta", "response_id": "r1"}))
    session.core.responses["r1"] = ResponseRecord(
        "r1", answered, "auto", None, None, items=["item_1"]
    )
    playback = WirePlayback()
    playback.push_media(b"\xff" * 320, answered + REPLY_DELAY_S)
    playback.push_mark("g0:m0:item_1", answered + REPLY_DELAY_S)
    caller = SimCaller(CallerOptions(url="ws://127.0.0.1:1/", script=CallerScript()))
    caller_report = CallRecorder(0.0).report(
        call_sid="CAsynthetic",
        stream_sid="MZsynthetic",
        end=2.0,
        playback=playback,
        speech=(),
        counters=WireCounters(media_sent=len(frames)),
        close=None,
    )
    run = CallRun(TurnPlan("CAsynthetic", 1), caller, playback, sent, report=caller_report)
    return run, session


def test_turn_metrics_on_a_call_with_known_delays() -> None:
    run, session = _turn_call()
    figures = analyse_call(run, session, [], SIM_OPTIONS)
    assert figures.problems == []
    (turn,) = figures.turns
    assert turn.speech_end_ms == 600.0
    # 0.600 s last speech frame sent -> 1.103 s first reply frame heard, minus 500 ms.
    assert turn.turn_latency_ms is not None
    assert abs(turn.turn_latency_ms - 3.0) < 1e-6
    assert turn.turn_end_detected_ms is not None
    assert abs(turn.turn_end_detected_ms - 2.0) < 1e-6
    assert len(turn.window_inbound_ms) == 30
    assert all(abs(ms - 2.0) < 1e-6 for ms in turn.window_inbound_ms)
    assert [round(ms, 6) for ms in figures.first_reply_audio_ms] == [1.0]
    assert figures.unforwarded_at_stop_ms == 100.0
    assert figures.facts["dropped_before_session_ms"] == 40.0


def test_gate_comparison_judges_the_p95_difference() -> None:
    def result(p50: float, p95: float) -> dict[str, object]:
        return {"metrics": {"turn_latency_ms": {"p50": p50, "p95": p95}}}

    gate = compare_gate(
        {"single": result(105.0, 108.0), "single-gate-off": result(4.0, 6.0), "x": result(1, 1)},
        "-gate-off",
    )
    assert list(gate) == ["single"]
    assert gate["single"]["turn_latency_p95_ms"] == {
        "gate_on": 108.0,
        "gate_off": 6.0,
        "difference": 102.0,
    }
    assert gate["single"]["pass"] is False


def test_cpu_per_call_minute_is_cpu_seconds_over_call_minutes() -> None:
    usage = {"wall_s": 60.0, "bridge": {"cpu_s": 12.0}, "cores": 2}
    load = cpu_per_call(usage, call_s=600.0)
    assert load["mean_concurrent_calls"] == 10.0
    assert load["bridge"] == {"cpu_ms_per_call_second": 20.0, "cpu_s_per_call_minute": 1.2}


def test_typed_records_are_read_back_from_the_json_log() -> None:
    buffer = io.StringIO()
    sink = logger.add(buffer, serialize=True, level="INFO")
    counters = dataclasses.asdict(CallCounters().snapshot())
    finished = CallFinished("twilio_stop", "", 3.5, "skipped", -62.0, counters)
    barge_in = BargeInReport(
        "server", 0.8, 2, 80, 120, ("r1",), (Truncation("i1", 300, 900),), (), 1.1, False, 42.0
    )
    try:
        with logger.contextualize(call_sid="CAlog"):
            log_action(report("INFO", barge_in))
            log_action(report("INFO", finished))
    finally:
        logger.remove(sink)
    lines = parse_log("not json\n" + buffer.getvalue())
    assert [(line.call_sid, r) for line, r in records(lines, CallFinished)] == [("CAlog", finished)]
    assert [r for _, r in records(lines, BargeInReport)] == [barge_in]


async def test_one_turn_end_to_end(tmp_path: Path) -> None:
    """The bridge as a child process, one call with one turn and short replies."""
    short = dataclasses.replace(SIM_OPTIONS, reply_ms=400)
    data = await run_scenario(
        "smoke",
        [TurnPlan("CAturnsmoke0001", 1)],
        sequential=True,
        sim_options=short,
        settings=bridge_settings("off"),
        out_dir=tmp_path,
        log_name="bench-turn-smoke.log",
    )
    assert data.runs[0].sent.frames, "the caller's hook saw no frame"
    result = analyse(data, one_call=True)
    metrics = result["metrics"]
    assert result["problem_count"] == 0, result["problems"]
    assert result["turns_measured"] == 1
    assert result["model_answer_delay"]["total_ms"] == 500.0
    assert metrics["turn_window_inbound_ms"]["n"] == 30
    assert metrics["first_reply_audio_ms"]["n"] == 2
    assert metrics["unforwarded_at_stop_ms"]["n"] == 1
    assert result["load"]["bridge"]["cpu_s_per_call_minute"] > 0.0
