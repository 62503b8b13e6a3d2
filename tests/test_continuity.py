"""A call survives its upstream: reconnect with the conversation, recycle before the cap.

Real loopback sockets, the simulated upstream and caller, virtual time. Each test breaks the
upstream the way the real service does (a close, a stall, refused handshakes, the session
cap) and checks what the caller lived through and what the new session was given.
"""

from __future__ import annotations

from typing import NamedTuple

import trio
from trio.testing import MockClock

from bench.chaos.rig import call_tasks_alive
from bridge.config import BridgeConfig
from bridge.core.call import GARBAGE_RUN_LIMIT
from bridge.core.ending import EndReason
from bridge.core.records import SessionRecycled, UpstreamLost, UpstreamRestored, read_record
from bridge.runtime.registry import CallHandle
from bridge.runtime.services import hold_audio
from bridge.sim.caller import SimCaller
from bridge.sim.report import CallerReport
from bridge.sim.script import AfterReply, At, CallerScript, Utterance
from bridge.sim.upstream import SimSession, SimUpstreamOptions
from tests.conftest import LogCapture
from tests.harness import Rig, start_rig


def handle_hold_audio() -> bytes:
    """The shipped hold phrase, as the bridge plays it (μ-law, 8 bytes/ms)."""
    return hold_audio(BridgeConfig())


def replayed(session: SimSession) -> list[tuple[str, str]]:
    """(role, text) of the items the bridge gave ``session`` as text."""
    return [
        (str(item.role), item.transcript)
        for item in session.conversation
        if item.client_item is not None and item.role in ("user", "assistant")
    ]


def silence_after(caller: SimCaller, at: float) -> float | None:
    """Seconds the caller waited after ``at`` (clock s) for AI audio (0 if it was playing
    then), or ``None`` if none came; the bridge's own hold phrase does not count."""
    later = [
        s
        for s in caller.playback.segments()
        if s.end > at and not (s.item_id or "").startswith("local_")
    ]
    return None if not later else max(0.0, min(s.start for s in later) - at)


class BrokenCall(NamedTuple):
    caller: SimCaller
    report: CallerReport
    broke_at: float
    """When (clock s) the session broke."""
    handle: CallHandle
    """The bridge's call, ended."""


async def _call_with_a_broken_session(
    rig: Rig,
    script: CallerScript | str,
    *,
    break_after_ms: float,
    how: str,
    refuse: int = 0,
    refuse_status: int = 503,
) -> BrokenCall:
    """Run a call; ``break_after_ms`` after the greeting starts, break session 0 by ``how``
    (after asking the sim to refuse the next ``refuse`` handshakes); wait for the bridge
    to end the call."""
    caller = rig.caller(script)
    async with trio.open_nursery() as nursery:
        done: list[CallerReport] = []

        async def run() -> None:
            done.append(await caller.run())

        nursery.start_soon(run)
        session = await rig.sim.wait_for_session(0)
        await caller.wait_ai_turn_started(1)
        await trio.sleep(break_after_ms / 1000.0)
        broke_at = trio.current_time()
        rig.sim.refuse_next(refuse, refuse_status)
        match how:
            case "close":
                session.close(1011)
            case "stall":
                session.stall()
            case "error_close":
                session.send_error("server_error", "The server had an error.")
                session.close(1011)
            case "garbage":
                for k in range(GARBAGE_RUN_LIMIT):
                    session.send_malformed(no_type=k % 2 == 1)
                    await trio.sleep(0.005)
    handle = await rig.server.registry.wait_for_call(done[0].call_sid)
    await handle.ended.wait()
    return BrokenCall(caller, done[0], broke_at, handle)


async def test_a_session_closed_mid_reply_heals_and_the_ai_resumes_what_it_was_saying(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(60):
        rig = await start_rig(nursery, sim_options=SimUpstreamOptions(generation_speed=1.0))
        caller, report, broke_at, handle = await _call_with_a_broken_session(
            rig, "listen:8", break_after_ms=600, how="close"
        )
    assert handle.end is not None
    assert handle.end.reason is EndReason.TWILIO_STOP
    assert rig.rest.hangups_for(report.call_sid) == []  # no fallback, no hang-up
    first, second = rig.sim.sessions[:2]
    # The new session was told what the caller heard of the greeting, and resumed it.
    [(role, text)] = replayed(second)
    assert role == "assistant"
    assert text
    assert "Hello! Thanks for calling, how can I help you today?".startswith(text)
    resumed = [r for r in second.responses.values() if r.status == "completed"]
    assert resumed
    said = next(
        i.transcript for i in second.conversation if i.role == "assistant" and i.client_item is None
    )
    assert said.startswith("Sorry, I was cut off. As I was saying:")
    # The caller heard AI audio again well within 1.5 s of the close, and no hold phrase.
    waited = silence_after(caller, broke_at)
    assert waited is not None
    assert waited <= 1.5
    assert handle.statistics().hold_phrases == 0
    [line] = logs.tagged("UPSTREAM_RESTORED", report.call_sid)
    assert "1 attempt(s)" in line
    assert logs.tagged("UPSTREAM_LOST", report.call_sid)
    assert call_tasks_alive(report.call_sid) == []
    assert first.closed.is_set()
    assert second.closed.is_set()


async def test_a_stalled_session_is_detected_and_replaced(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    script = CallerScript(
        utterances=(Utterance(1200, 3, At(ms=6000)),), hangup=AfterReply(delay_ms=500)
    )
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        _caller, report, _, handle = await _call_with_a_broken_session(
            rig, script, break_after_ms=3500, how="stall"
        )
        rig.sim.sessions[0].send_unknown_event()  # lets the stalled peer see our close
    assert handle.end is not None
    assert handle.end.reason is EndReason.TWILIO_STOP
    restored = [
        r for _, extra in logs.records if (r := read_record(UpstreamRestored, extra)) is not None
    ]
    assert len(restored) == 1
    # Heartbeat 1 s + its 1 s timeout to notice, then a new session at once.
    assert restored[0].gap_ms <= 1500
    # The caller's question after the stall was answered by the new session.
    assert len(report.ai_turns) >= 2
    assert any(
        item.transcript.startswith("You said:")
        for item in rig.sim.sessions[1].conversation
        if item.role == "assistant"
    )


def longest_silence(caller: SimCaller, start: float, end: float) -> float:
    """The longest stretch (s) between ``start`` and ``end`` (clock s) in which the caller
    heard nothing at all: AI audio and the bridge's own cues and phrases both count."""
    spans = sorted((s.start, s.end) for s in caller.playback.segments() if s.end > start)
    longest, heard_to = 0.0, start
    for span_start, span_end in spans:
        if span_start >= end:
            break
        longest = max(longest, span_start - heard_to)
        heard_to = max(heard_to, span_end)
    return max(longest, end - heard_to)


async def test_a_stall_mid_reply_gets_a_soft_cue_before_the_heartbeat_finds_it(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    # Twilio's buffer runs dry long before the heartbeat can tell a stall from a pause.
    with trio.fail_after(60):
        rig = await start_rig(nursery, sim_options=SimUpstreamOptions(generation_speed=1.0))
        caller, report, broke_at, handle = await _call_with_a_broken_session(
            rig, "listen:8", break_after_ms=600, how="stall"
        )
        rig.sim.sessions[0].send_unknown_event()  # lets the stalled peer see our close
    [starved] = logs.tagged("REPLY_STARVED", report.call_sid)
    assert "mid-item" in starved
    assert handle.statistics().comfort_cues == 1
    assert handle.statistics().hold_phrases == 0  # healed before a phrase was due
    back = silence_after(caller, broke_at)
    assert back is not None
    # From the stall to the new session's audio the caller never heard 1.5 s of nothing.
    assert longest_silence(caller, broke_at, broke_at + back) < 1.2
    assert logs.tagged("UPSTREAM_RESTORED", report.call_sid)


async def test_refused_reconnects_within_the_budget_heal_with_one_hold_phrase(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        _caller, report, _, handle = await _call_with_a_broken_session(
            rig, "listen:8", break_after_ms=3200, how="close", refuse=2
        )
    assert handle.end is not None
    assert handle.end.reason is EndReason.TWILIO_STOP
    stats = handle.statistics()
    assert (stats.upstream_losses, stats.upstream_restores) == (1, 1)
    assert stats.reconnect_attempts == 3  # two refused, the third healed it
    assert rig.sim.rejected_handshakes == 2
    # About 1.2 s without a session after the greeting ended: the caller heard the phrase once.
    assert stats.hold_phrases == 1
    assert report.heard_ms_by_item.get("local_hold_1", 0.0) > 0.0


async def test_a_spent_budget_ends_the_call_with_the_fallback(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        _caller, report, _, handle = await _call_with_a_broken_session(
            rig, "listen:20", break_after_ms=500, how="close", refuse=10
        )
    assert handle.end is not None
    assert handle.end.reason is EndReason.OPENAI_LOST
    assert "3 reconnect attempt(s)" in handle.end.detail
    assert report.close is not None
    assert report.close.code == 1011  # the TwiML fallback plays
    assert len(rig.rest.hangups_for(report.call_sid)) == 1
    assert handle.statistics().hold_phrases == 1
    assert rig.sim.rejected_handshakes == 3


async def test_a_handshake_refused_for_good_is_not_retried(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        _caller, _report, _, handle = await _call_with_a_broken_session(
            rig, "listen:20", break_after_ms=500, how="close", refuse=1, refuse_status=401
        )
    assert handle.end is not None
    assert handle.end.reason is EndReason.OPENAI_HANDSHAKE_FAILED
    assert "HTTP 401" in handle.end.detail
    assert rig.sim.rejected_handshakes == 1
    assert len(rig.sim.sessions) == 1


async def test_the_services_session_cap_is_healed_like_any_close(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    script = CallerScript(
        utterances=(Utterance(1000, 4, At(ms=7000)),), hangup=AfterReply(delay_ms=500)
    )
    with trio.fail_after(60):
        rig = await start_rig(nursery, sim_options=SimUpstreamOptions(session_max_s=5.0))
        completed = await rig.complete_call(script)
    handle = completed.handle
    assert handle.end is not None
    assert handle.end.reason is EndReason.TWILIO_STOP
    assert len(rig.sim.sessions) >= 2
    assert rig.sim.sessions[0].close_code == 1001
    assert handle.statistics().upstream_restores >= 1
    assert len(completed.report.ai_turns) >= 2  # the caller's question was answered


async def test_sessions_are_recycled_at_turn_boundaries_and_the_call_is_never_cut(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    """Three recycles over a 4-minute call (recycle after 60 s, the least allowed): every
    switch happens while nobody speaks, and every caller turn gets its answer."""
    utterances = tuple(Utterance(1200, 10 + k, At(ms=20_000 + 40_000 * k)) for k in range(5))
    script = CallerScript(utterances=utterances, hangup=At(ms=230_000))
    with trio.fail_after(600):
        rig = await start_rig(nursery, session_recycle_s=60.0)
        report = await rig.caller(script, max_duration_s=300.0).run()
        handle = await rig.server.registry.wait_for_call(report.call_sid)
        await handle.ended.wait()
    assert handle.end is not None
    assert handle.end.reason is EndReason.TWILIO_STOP
    stats = handle.statistics()
    assert stats.sessions_recycled == 3
    assert stats.upstream_losses == 0
    assert report.clears == 0  # nothing was ever cut off
    answers = [
        item.transcript
        for session in rig.sim.sessions
        for item in session.conversation
        if item.role == "assistant"
        and item.client_item is None  # not the replayed text of an earlier session's answer
        and item.transcript.startswith("You said:")
    ]
    assert len(answers) == len(utterances)
    # Each new session was given the conversation so far: the last one has every answer.
    last_replay = [text for role, text in replayed(rig.sim.sessions[-1]) if role == "assistant"]
    assert sum(text.startswith("You said:") for text in last_replay) >= 3
    recycles = [
        r for _, extra in logs.records if (r := read_record(SessionRecycled, extra)) is not None
    ]
    assert len(recycles) == 3
    assert all(r.at_turn_boundary for r in recycles)


async def test_a_server_error_then_a_close_heals_and_the_reply_resumes(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(60):
        rig = await start_rig(nursery, sim_options=SimUpstreamOptions(generation_speed=1.0))
        caller, report, broke_at, handle = await _call_with_a_broken_session(
            rig, "listen:8", break_after_ms=800, how="error_close"
        )
    assert handle.end is not None
    assert handle.end.reason is EndReason.TWILIO_STOP
    assert logs.tagged("UPSTREAM_ERROR", report.call_sid)
    restored = [
        r for _, extra in logs.records if (r := read_record(UpstreamRestored, extra)) is not None
    ]
    assert [r.resumed_reply for r in restored] == [True]
    waited = silence_after(caller, broke_at)
    assert waited is not None
    assert waited <= 1.5


async def test_a_stream_of_garbage_gives_the_session_up_and_the_call_heals(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        _caller, _report, _, handle = await _call_with_a_broken_session(
            rig, "listen:8", break_after_ms=3500, how="garbage"
        )
    assert handle.end is not None
    assert handle.end.reason is EndReason.TWILIO_STOP
    lost = [r for _, extra in logs.records if (r := read_record(UpstreamLost, extra)) is not None]
    assert [r.reason for r in lost] == [EndReason.OPENAI_GARBAGE.value]
    assert handle.statistics().upstream_restores == 1
    assert handle.statistics().upstream_malformed == GARBAGE_RUN_LIMIT
    assert len(rig.sim.sessions) == 2


async def test_a_slow_reply_is_covered_by_the_hold_phrase_then_plays(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    """The model takes 4.8 s to start its answer: 4.5 s after the caller's turn ended the
    caller hears "One moment, please." in full, then the answer. The response exists all
    along, so no nudge (it would only collide with it)."""
    script = CallerScript(
        utterances=(Utterance(1000, 4, At(ms=4000)),), hangup=AfterReply(delay_ms=500)
    )
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        caller = rig.caller(script)
        reports: list[CallerReport] = []

        async def run() -> None:
            reports.append(await caller.run())

        async with trio.open_nursery() as call:
            call.start_soon(run)
            await caller.wait_ai_turn_ended(1)  # the greeting, at the usual speed
            rig.sim.sessions[0].slow_replies(4800)
        [report] = reports
        handle = await rig.server.registry.wait_for_call(report.call_sid)
        await handle.ended.wait()
    assert handle.end is not None
    assert handle.end.reason is EndReason.TWILIO_STOP
    assert logs.tagged("REPLY_NUDGE", report.call_sid) == []
    [hold] = logs.tagged("HOLD_PHRASE", report.call_sid)
    assert "late" in hold
    heard_hold = report.heard_ms_by_item.get("local_hold_1", 0.0)
    assert heard_hold == len(handle_hold_audio()) / 8
    assert len(report.ai_turns) >= 2  # the answer came, after the phrase
    assert handle.statistics().upstream_losses == 0


async def test_caller_media_that_stops_is_logged_and_a_long_stop_ends_with_the_fallback(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        short = await rig.caller("listen:12", lost_inbound_ms=((4000, 3000),)).run()
        long = await rig.caller("listen:30", lost_inbound_ms=((4000, 20_000),)).run()
        short_call = await rig.server.registry.wait_for_call(short.call_sid)
        long_call = await rig.server.registry.wait_for_call(long.call_sid)
        await long_call.ended.wait()
    assert short_call.end is not None
    assert short_call.end.reason is EndReason.TWILIO_STOP
    assert short_call.statistics().media_stalls == 1
    assert logs.tagged("TWILIO_MEDIA_RESUMED", short.call_sid)
    assert long_call.end is not None
    assert long_call.end.reason is EndReason.TWILIO_MEDIA_TIMEOUT
    assert len(rig.rest.hangups_for(long.call_sid)) == 1


async def test_caller_audio_during_the_gap_reaches_the_new_session_and_is_answered(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    """The caller asks while no session is up (two refused reconnects, about 1.2 s): the
    question waits in the bridge, goes to the new session and is answered."""
    script = CallerScript(
        utterances=(Utterance(900, 7, At(ms=4300)),), hangup=AfterReply(delay_ms=500)
    )
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        _caller, _report, _, handle = await _call_with_a_broken_session(
            rig, script, break_after_ms=3200, how="close", refuse=2
        )
    assert handle.end is not None
    assert handle.end.reason is EndReason.TWILIO_STOP
    new = rig.sim.sessions[1]
    assert any(
        item.role == "user" and item.client_item is None and item.transcript
        for item in new.conversation
    )
    assert any(
        item.transcript.startswith("You said:")
        for item in new.conversation
        if item.role == "assistant" and item.client_item is None
    )
    assert handle.statistics().caller_audio_dropped_ms == 0
