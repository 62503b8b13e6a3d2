"""The hard barge-in over real sockets, seen from both peers."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from bridge.core.marks import parse_mark_name
from bridge.sim.script import AfterAiStarts, AfterReply, CallerScript, Utterance
from bridge.sim.upstream import SimUpstreamOptions
from tests.conftest import LogCapture
from tests.harness import start_rig


def cut_in(turn: int, delay_ms: int, seed: int, duration_ms: int = 900) -> Utterance:
    return Utterance(duration_ms, seed, AfterAiStarts(turn=turn, delay_ms=delay_ms))


async def test_barge_in_while_generating_drops_late_audio_and_answers_only_new_words(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    # Generation at 1x real time: the reply is still being generated when the caller cuts
    # in, so the server cancels it and in-flight deltas arrive after the cancel.
    options = SimUpstreamOptions(
        generation_speed=1.0,
        reply_ms=5000,
        late_deltas_after_cancel=3,
        caller_transcripts=("What are your hours?", "No, I mean on Sunday."),
    )
    script = CallerScript(
        utterances=(
            Utterance(1200, 1, AfterAiStarts(turn=1, delay_ms=5500)),
            cut_in(turn=2, delay_ms=1500, seed=2),
        ),
        hangup=AfterReply(delay_ms=500),
    )
    with trio.fail_after(60):
        rig = await start_rig(nursery, sim_options=options)
        _caller, report, handle, session = await rig.complete_call(script)
    sent = [e["type"] for _, e in session.received]
    # The server's VAD cancelled the response itself (interrupt_response), so the bridge
    # sends no cancel of its own, and the normal path draws no error event at all.
    assert "response.cancel" not in sent
    assert "conversation.item.truncate" in sent
    assert [r.reason for r in session.responses.values() if r.status == "cancelled"] == [
        "turn_detected"
    ]
    assert [e for _, e in session.sent if e["type"] == "error"] == []
    [truncation] = session.truncations
    assert truncation.accepted
    heard = report.heard_ms_by_item[truncation.item_id]
    assert abs(truncation.audio_end_ms - heard) <= 40
    # Late deltas of the cancelled response arrived and none reached the caller.
    assert handle.statistics().late_deltas_dropped >= 1
    cancelled = {
        item for r in session.responses.values() if r.status == "cancelled" for item in r.items
    }
    assert cancelled
    after_clear = report.ai_turns[2:]
    assert after_clear
    assert all(
        item not in cancelled for item in report.heard_ms_by_item if item != truncation.item_id
    )
    # The model answers only what the caller said after cutting in.
    answers = [i.transcript for i in session.conversation if i.role == "assistant" and i.transcript]
    assert answers[-1].startswith("You said: No, I mean on Sunday.")
    # The answer is heard in full.
    last = report.ai_turns[-1]
    assert not last.interrupted
    assert last.heard_ms >= 4900
    [line] = logs.tagged("BARGE_IN", report.call_sid)
    assert "trigger=server" in line
    assert "cancel=" in line
    assert "truncate=" in line
    assert logs.tagged("TX_FLUSH", report.call_sid)


async def test_barge_in_after_generation_finished_still_clears_and_truncates(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    # Generation at 4x: the reply is complete upstream long before the caller cuts in, but
    # Twilio is still playing it. `clear` must still go out, and the item is truncated.
    script = CallerScript(
        utterances=(cut_in(turn=1, delay_ms=2200, seed=5),), hangup=AfterReply(500)
    )
    with trio.fail_after(60):
        rig = await start_rig(nursery, sim_options=SimUpstreamOptions(reply_ms=4000))
        _caller, report, _handle, session = await rig.complete_call(script)
    assert report.clears == 1
    [truncation] = session.truncations
    assert truncation.accepted
    assert abs(truncation.audio_end_ms - report.heard_ms_by_item[truncation.item_id]) <= 40
    assert truncation.audio_end_ms < truncation.generated_ms
    greeting = report.ai_turns[0]
    assert greeting.interrupted
    assert greeting.caller_overlap_ms is not None
    # Paced sending: little was left unplayed at Twilio when the clear landed.
    [line] = logs.tagged("BARGE_IN", report.call_sid)
    unplayed = int(line.split("unplayed_at_twilio=")[1].split("ms")[0])
    assert unplayed <= rig.server.services.config.tx_lead_ms


async def test_multi_item_response_truncates_heard_item_and_deletes_unheard(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    options = SimUpstreamOptions(items_per_response=2, reply_ms=2000)
    script = CallerScript(
        utterances=(cut_in(turn=1, delay_ms=2600, seed=6),), hangup=AfterReply(500)
    )
    with trio.fail_after(60):
        rig = await start_rig(nursery, sim_options=options)
        _caller, report, _handle, session = await rig.complete_call(script)
    greeting_items = next(iter(session.responses.values())).items
    assert len(greeting_items) == 2
    first, second = greeting_items
    # The first item was heard in full: left alone. The second was cut part way.
    assert [t.item_id for t in session.truncations] == [second]
    assert abs(report.heard_ms_by_item[first] - 2000) <= 20
    assert session.truncations[0].accepted


async def test_marks_carry_generation_and_clear_returns_are_not_counted(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    # Marks go out every 200 ms of audio and Twilio holds 100 ms: the cut-in is placed so
    # that the clear lands while a mark is still pending at Twilio.
    script = CallerScript(
        utterances=(cut_in(turn=1, delay_ms=1620, seed=8),), hangup=AfterReply(500)
    )
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        caller, report, handle, _session = await rig.complete_call(script)
    counters = handle.statistics()
    assert report.marks_echoed_by_clear >= 1
    assert counters.marks_cleared == report.marks_echoed_by_clear
    assert counters.marks_played == report.marks_echoed - report.marks_echoed_by_clear
    # Every mark Twilio returned because of the clear belongs to the cleared generation.
    [clear] = caller.playback.clears
    returned = [parse_mark_name(name) for name in clear.echoes]
    assert returned
    assert {m.generation for m in returned if m} == {0}
