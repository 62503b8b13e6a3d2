"""Sans-IO tests of caller scripts, trigger resolution and the printed timeline."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.sim.playback import AiTurn
from bridge.sim.report import CallerReport, EventKind, TimelineEntry, format_timeline
from bridge.sim.script import (
    AfterAiEnds,
    AfterAiStarts,
    AfterReply,
    At,
    CallerScript,
    Speech,
    SpeechScheduler,
    Trigger,
    Utterance,
    script_from_name,
)


def _speech(trigger: Trigger, ms: int = 1000, value: float = 0.1) -> Speech:
    return Speech(
        label="t", samples=np.full(ms * 8, value, dtype=np.float32), trigger=trigger, start=None
    )


def _turn(index: int, start: float, end: float | None) -> AiTurn:
    return AiTurn(index=index, start=start, end=end, interrupted=False)


def test_at_is_relative_to_stream_start_and_utterances_do_not_overlap() -> None:
    sched = SpeechScheduler([_speech(At(500)), _speech(At(600))], At(0), stream_start=10.0)
    placed = sched.schedule(earliest=10.0, turns=[])
    assert [start for start, _ in placed] == pytest.approx([10.5, 11.5])


def test_ai_triggers_wait_for_the_turn_then_resolve_exactly() -> None:
    sched = SpeechScheduler(
        [_speech(AfterAiEnds(1, 400)), _speech(AfterAiStarts(2, 1200))], AfterReply(0), 0.0
    )
    assert sched.schedule(0.0, [_turn(1, 0.2, None)]) == []
    placed = sched.schedule(2.0, [_turn(1, 0.2, 1.7)])
    assert [start for start, _ in placed] == pytest.approx([2.1])
    assert sched.schedule(4.0, [_turn(1, 0.2, 1.7)]) == []
    placed = sched.schedule(4.0, [_turn(1, 0.2, 1.7), _turn(2, 4.0, None)])
    assert [start for start, _ in placed] == pytest.approx([5.2])


def test_a_trigger_resolved_late_starts_at_the_first_unsent_frame() -> None:
    sched = SpeechScheduler([_speech(AfterAiEnds(1, 100))], At(0), 0.0)
    placed = sched.schedule(earliest=1.28, turns=[_turn(1, 0.0, 1.0)])
    assert placed[0][0] == pytest.approx(1.28)


def test_after_reply_waits_for_the_turn_that_started_after_the_utterance() -> None:
    sched = SpeechScheduler([_speech(At(1000), ms=500)], AfterReply(1000), 0.0)
    sched.schedule(0.0, [])
    # Turn 1 started before the utterance (and was cut): it is not the reply.
    turns = [_turn(1, 0.5, 1.2)]
    assert sched.hangup_time(turns) is None
    turns.append(_turn(2, 2.0, None))
    assert sched.hangup_time(turns) is None
    turns[1] = _turn(2, 2.0, 3.5)
    assert sched.hangup_time(turns) == pytest.approx(4.5)


def test_hangup_waits_for_all_speech_and_never_cuts_it() -> None:
    sched = SpeechScheduler([_speech(At(1000), ms=2000)], At(500), 0.0)
    assert sched.hangup_time([]) is None  # the utterance is not scheduled yet
    sched.schedule(0.0, [])
    assert sched.hangup_time([]) == pytest.approx(3.0)


def test_overlay_places_speech_at_its_byte_offset() -> None:
    sched = SpeechScheduler([_speech(At(10), ms=20, value=0.5)], At(0), 0.0)
    sched.schedule(0.0, [])
    frame = np.zeros(160, dtype=np.float32)
    assert sched.overlay(0, frame)
    assert not frame[:80].any()
    assert (frame[80:] == 0.5).all()
    frame = np.zeros(160, dtype=np.float32)
    assert sched.overlay(160, frame)
    assert (frame[:80] == 0.5).all()
    assert not frame[80:].any()
    assert not sched.overlay(320, np.zeros(160, dtype=np.float32))


def test_canned_scripts() -> None:
    demo = script_from_name("demo")
    assert [u.trigger for u in demo.utterances] == [AfterAiEnds(1, 400), AfterAiStarts(2, 1200)]
    assert [u.duration_ms for u in demo.utterances] == [1500, 1400]
    assert demo.hangup == AfterReply(1000)
    assert script_from_name("listen").hangup == At(10_000)
    assert script_from_name("listen:2.5") == CallerScript(utterances=(), hangup=At(2500))
    assert script_from_name("talk").utterances[0].trigger == At(1000)
    with pytest.raises(ValueError, match="known: demo"):
        script_from_name("sing")
    with pytest.raises(ValueError, match="positive"):
        script_from_name("listen:-1")


def test_script_values_are_validated() -> None:
    with pytest.raises(ValueError, match="positive"):
        Utterance(duration_ms=0, seed=1, trigger=At(0))
    with pytest.raises(ValueError, match="numbered from 1"):
        Utterance(duration_ms=10, seed=1, trigger=AfterAiEnds(0))
    with pytest.raises(ValueError, match="negative"):
        CallerScript(hangup=AfterReply(-5))


def test_format_timeline_is_aligned_and_readable() -> None:
    report = CallerReport(
        call_sid="CA1",
        stream_sid="MZ1",
        duration_ms=12_345.0,
        timeline=[
            TimelineEntry(3412.0, EventKind.AI_START, "speaking (turn 2)"),
            TimelineEntry(4900.0, EventKind.SPEECH_START, "starts speaking (1.2 s, seed 2)"),
            TimelineEntry(4913.0, EventKind.CLEAR, "clear: 3 marks echoed, 96 ms unplayed dropped"),
            TimelineEntry(12_001.5, EventKind.CLOSED, "socket closed (code 1000)"),
        ],
        media_sent=600,
        media_lost=0,
        late_frames=0,
        media_received=300,
        media_received_bytes=48_000,
        marks_received=300,
        marks_echoed=300,
        marks_echoed_by_clear=3,
        clears=1,
        violations={31951: 2},
        violation_samples=[],
        underrun_gaps=0,
        underrun_ms=0.0,
        underruns_by_item={},
        ai_turns=[],
        heard_ms_by_item={},
        heard_ms=5900.0,
        close=None,
    )
    lines = format_timeline(report).splitlines()
    assert lines[:4] == [
        "  3.412s  AI     speaking (turn 2)",
        "  4.900s  CALLER starts speaking (1.2 s, seed 2)",
        "  4.913s  TWILIO clear: 3 marks echoed, 96 ms unplayed dropped",
        " 12.002s  TWILIO socket closed (code 1000)",
    ]
    assert "heard 5.90 s" in lines[4]
    assert "2 protocol violations" in lines[4]
    assert report.media_received_ms == 6000.0
