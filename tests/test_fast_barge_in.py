"""The local fast path over real sockets: a false alarm resumes, a real one completes."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from bridge.sim.script import AfterAiStarts, AfterReply, At, CallerScript, Utterance
from bridge.sim.upstream import SimUpstreamOptions
from tests.conftest import LogCapture
from tests.harness import start_rig


async def test_false_alarm_resumes_held_audio_and_truncates_nothing(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    # A 200 ms sound over the greeting: long enough for the local detector, too short for
    # the server's VAD (here 400 ms), like a cough or an "mm-hm" the server ignores.
    script = CallerScript(
        utterances=(
            Utterance(duration_ms=200, seed=3, trigger=AfterAiStarts(turn=1, delay_ms=1000)),
        ),
        hangup=At(ms=8000),
    )
    with trio.fail_after(30):
        rig = await start_rig(
            nursery,
            sim_options=SimUpstreamOptions(vad_onset_ms=400, reply_ms=3000),
            fast_barge_in="duck",
        )
        _caller, report, handle, session = await rig.complete_call(script)
    [held] = await logs.wait_for("BARGE_IN", 1, report.call_sid)
    assert "trigger=local" in held
    assert logs.tagged("BARGE_IN_RESUMED", report.call_sid)
    assert session.speech_started == []
    assert session.truncations == []
    assert [e["type"] for _, e in session.received].count("response.cancel") == 0
    # The greeting resumed where it stopped: heard in full, with one pause in the middle.
    [greeting_item] = [i for i in session.conversation if i.role == "assistant"]
    assert abs(report.heard_ms_by_item[greeting_item.id] - greeting_item.audio_ms) <= 20
    assert report.clears == 1
    assert handle.statistics().false_alarms_resumed == 1


async def test_local_onset_confirmed_by_server_completes_the_barge_in(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    script = CallerScript(
        utterances=(
            Utterance(duration_ms=1200, seed=4, trigger=AfterAiStarts(turn=1, delay_ms=1000)),
        ),
        hangup=AfterReply(delay_ms=500),
    )
    with trio.fail_after(30):
        rig = await start_rig(nursery, fast_barge_in="duck")
        _caller, report, _handle, session = await rig.complete_call(script)
    local, confirmed = await logs.wait_for("BARGE_IN", 2, report.call_sid)
    assert "trigger=local" in local
    assert "trigger=confirmed" in confirmed
    [truncation] = session.truncations
    assert truncation.accepted
    # Truncated at what the caller heard before the local stop, not later.
    heard = report.heard_ms_by_item[truncation.item_id]
    assert abs(truncation.audio_end_ms - heard) <= 40
    greeting, answer = report.ai_turns[:2]
    assert greeting.interrupted
    assert greeting.caller_overlap_ms is not None
    # The local path stops the AI before the server's VAD (150 ms of speech) could.
    assert greeting.caller_overlap_ms < 150
    assert answer.heard_ms > 2500
    assert report.clears == 1
