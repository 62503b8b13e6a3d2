"""Tools end to end over loopback sockets: the bridge, the simulated upstream scripted to call
tools, a local application (tool endpoints, call events), the fake Twilio REST API, the
simulated caller. Virtual time (``autojump_clock``): the seconds below cost nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio.testing import MockClock

from bench.chaos.rig import call_tasks_alive
from bridge.core.appsign import SIGNATURE_HEADER
from bridge.runtime import app_link
from bridge.sim.caller import SimCaller
from bridge.sim.report import CallerReport
from bridge.sim.script import AfterAiEnds, AfterAiStarts, AfterReply, At, CallerScript, Utterance
from bridge.sim.tool_app import ToolBehaviour
from bridge.sim.upstream import SimSession, SimUpstreamOptions
from bridge.sim.upstream_tools import SimToolCall
from tests.conftest import LogCapture
from tests.harness import CONTROL_AUTH
from tests.test_conformance import assert_session_conforms
from tests.tool_rig import SECRET, ToolRig, start_tool_rig

TIMEOUT_S = 120  # virtual seconds
README = Path(__file__).parent.parent / "README.md"
ORDER = '{"order_id": "4217"}'


REPLY_MS = 1500
"""Every AI reply (greeting included): short calls, so the suite stays fast."""


def sim_options(**changes: Any) -> SimUpstreamOptions:
    return SimUpstreamOptions(**({"reply_ms": REPLY_MS} | changes))


def ask(after_turn: int = 1, *, seed: int = 1, ms: int = 1200) -> Utterance:
    """The caller speaks 400 ms after AI turn ``after_turn`` ended."""
    return Utterance(ms, seed, AfterAiEnds(turn=after_turn, delay_ms=400))


def received(session: SimSession, kind: str) -> list[dict[str, Any]]:
    return [e for _, e in session.received if e["type"] == kind]


def outputs(session: SimSession) -> list[dict[str, Any]]:
    return [
        e["item"]
        for e in received(session, "conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]


def tool_creates(session: SimSession) -> list[dict[str, Any]]:
    return [
        e["response"]
        for e in received(session, "response.create")
        if "bridge_purpose" in e["response"]["metadata"]
    ]


def call_ids(session: SimSession) -> list[str]:
    return [
        e["item"]["call_id"]
        for _, e in session.sent
        if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"
    ]


def sent_at(session: SimSession, kind: str, item_type: str | None = None) -> list[float]:
    return [
        t
        for t, e in session.sent
        if e["type"] == kind and (item_type is None or e.get("item", {}).get("type") == item_type)
    ]


def first_heard(caller: SimCaller, item_id: str) -> float:
    return min(s.start for s in caller.playback.segments() if s.item_id == item_id)


def response_items(session: SimSession, purpose: str) -> list[str]:
    return [
        item
        for r in session.responses.values()
        if (r.metadata or {}).get("bridge_purpose") == purpose
        for item in r.items
    ]


async def run_call(rig: ToolRig, script: CallerScript) -> tuple[SimCaller, CallerReport]:
    caller = rig.caller(script)
    report = await caller.run()
    handle = await rig.server.registry.wait_for_call(report.call_sid)
    await handle.ended.wait()
    if rig.server.services.config.events_url is not None:
        await rig.app.wait_for_event("call.ended")
    await rig.sim.sessions[0].closed.wait()
    return caller, report


# -- the round trip -------------------------------------------------------------------------


async def test_a_tool_round_trip_signed_with_one_response_and_conforming_events(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    options = sim_options(tool_calls=(SimToolCall(1, "lookup_order", ORDER),))
    script = CallerScript(utterances=(ask(),), hangup=AfterReply(500))
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(
            nursery, sim_options=options, tools={"lookup_order": ToolBehaviour(delay_s=0.3)}
        )
        _, report = await run_call(rig, script)
    session = rig.sim.sessions[0]
    [call_id] = call_ids(session)
    # The application got one signed request with everything it needs.
    [exchange] = rig.app.tool_calls()
    body = exchange.json()
    control_url = f"http://127.0.0.1:{rig.server.port}/calls/{report.call_sid}"
    assert body == {
        "type": "tool.call",
        "tool": "lookup_order",
        "call_id": call_id,
        "arguments": {"order_id": "4217"},
        "epoch": 0,
        "idempotency_key": f"{report.call_sid}:{call_id}",
        "call_sid": report.call_sid,
        "stream_sid": report.stream_sid,
        "control_url": control_url,
    }
    assert exchange.headers["idempotency-key"] == f"{report.call_sid}:{call_id}"
    assert rig.app.bad_signatures == 0
    # Its reply became the output, then one response.create answered it.
    [output] = outputs(session)
    assert output == {
        "type": "function_call_output",
        "call_id": call_id,
        "output": '{"order_id":"4217","status":"shipped","arrives":"Thursday"}',
    }
    [create] = tool_creates(session)
    assert create["metadata"]["bridge_purpose"] == "tools"
    answer = next(
        i for i in session.conversation if i.role == "assistant" and "found" in i.transcript
    )
    assert "shipped" in answer.transcript
    assert report.ai_turns[-1].heard_ms >= REPLY_MS - 100  # the answer was heard in full
    # The session.update listed the tools; every frame both ways conforms to the SDK.
    [update] = received(session, "session.update")
    assert [t["name"] for t in update["session"]["tools"]][:2] == ["lookup_order", "book_table"]
    assert update["session"]["tool_choice"] == "auto"
    assert_session_conforms(session)
    kinds = {e["type"] for _, e in session.sent}
    assert {
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    } <= kinds
    assert logs.tagged("TOOL_CALL", report.call_sid)
    [result] = logs.tagged("TOOL_RESULT", report.call_sid)
    assert "outcome=ok" in result


async def test_parallel_calls_are_answered_together(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    options = sim_options(
        tool_calls=(
            SimToolCall(1, "lookup_order", ORDER),
            SimToolCall(1, "book_table", '{"time": "19:00"}'),
        )
    )
    script = CallerScript(utterances=(ask(),), hangup=AfterReply(500))
    tools = {"lookup_order": ToolBehaviour(delay_s=0.2), "book_table": ToolBehaviour(delay_s=0.6)}
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(nursery, sim_options=options, tools=tools)
        await run_call(rig, script)
    session = rig.sim.sessions[0]
    order = [
        ("output", e["item"]["call_id"])
        if e["type"] == "conversation.item.create"
        else ("create", "")
        for _, e in session.received
        if (e["type"] == "response.create" and "bridge_for" in e["response"]["metadata"])
        or e["type"] == "conversation.item.create"
    ]
    lookup, book = call_ids(session)
    assert order == [("output", lookup), ("output", book), ("create", "")]


async def test_failures_become_error_outputs_the_model_speaks_and_the_call_goes_on(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    options = sim_options(
        tool_calls=(
            SimToolCall(1, "lookup_order", ORDER),  # too slow: times out
            SimToolCall(1, "broken", "{}"),  # HTTP 500
            SimToolCall(1, "book_table", "{}"),  # not JSON
            SimToolCall(1, "unreachable", "{}"),  # connection refused
            SimToolCall(1, "no_such_tool", "{}"),
        )
    )
    tools = {
        "lookup_order": ToolBehaviour(delay_s=5.0),
        "broken": ToolBehaviour(status=500, body=b'{"error": "db down"}'),
        "book_table": ToolBehaviour(body=b"<html>oops</html>"),
    }
    script = CallerScript(utterances=(ask(),), hangup=AfterReply(500))
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(nursery, sim_options=options, tools=tools, timeout_s=1)
        _, report = await run_call(rig, script)
    session = rig.sim.sessions[0]
    errors = {o["call_id"]: json.loads(o["output"])["error"] for o in outputs(session)}
    assert list(errors.values()) == sorted(errors.values(), key=list(errors.values()).index)
    assert sorted(errors.values()) == sorted(
        ["timeout", "http_status", "invalid_json", "unreachable", "unknown_tool"]
    )
    purposes = [c["metadata"]["bridge_purpose"] for c in tool_creates(session)]
    assert purposes == ["filler", "tools"]  # checking (the timeout is slow), then the errors
    assert report.close is not None
    assert report.close.by == "caller"
    assert report.ai_turns[-1].heard_ms >= REPLY_MS - 100


# -- dead air -------------------------------------------------------------------------------


async def test_a_slow_tool_gets_one_filler_within_a_second_and_the_answer_follows(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    options = sim_options(tool_calls=(SimToolCall(1, "lookup_order", ORDER),))
    script = CallerScript(utterances=(ask(),), hangup=AfterAiEnds(turn=3, delay_ms=500))
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(
            nursery, sim_options=options, tools={"lookup_order": ToolBehaviour(delay_s=3.0)}
        )
        caller, report = await run_call(rig, script)
    session = rig.sim.sessions[0]
    purposes = [c["metadata"]["bridge_purpose"] for c in tool_creates(session)]
    assert purposes == ["filler", "tools"]  # once per wait, then the answer
    [filler] = [c for c in tool_creates(session) if c["metadata"]["bridge_purpose"] == "filler"]
    assert filler["tool_choice"] == "none"
    [called_at] = sent_at(session, "response.output_item.done", "function_call")
    [filler_item] = response_items(session, "filler")
    silence = first_heard(caller, filler_item) - called_at
    assert 0.5 < silence <= 1.0, silence
    [answer_item] = response_items(session, "tools")
    [tool] = rig.app.tool_calls()
    assert first_heard(caller, answer_item) > tool.replied_at
    assert [t.interrupted for t in report.ai_turns] == [False, False, False]
    assert len(logs.tagged("TOOL_FILLER", report.call_sid)) == 1
    assert_session_conforms(session)  # tool_choice "none", bridge_purpose metadata


# -- barge-in -------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["lookup_order", "book_table"])
async def test_a_barge_in_cancels_or_lets_finish_silently(
    tool: str, autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    # The model says "let me look that up" (2.5 s) and calls; the caller cuts in while it
    # speaks and the tool (3 s) is still running.
    options = sim_options(tool_calls=(SimToolCall(1, tool, "{}", say_first_ms=2500),))
    script = CallerScript(
        utterances=(ask(), Utterance(900, 2, AfterAiStarts(turn=2, delay_ms=800))),
        hangup=At(20_000),
    )
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(
            nursery, sim_options=options, tools={tool: ToolBehaviour(delay_s=3.0)}
        )
        caller = rig.caller(script)
        async with trio.open_nursery() as inner:
            inner.start_soon(caller.run)
            handle = await rig.server.registry.wait_for_call(caller.options.call_sid)
            sid = caller.options.call_sid
            if tool == "lookup_order":  # cancelled, then its late result dropped
                await logs.wait_for("TOOL_CANCELLED", count=2, call_sid=sid)
            else:  # finished: its result delivered, and the bridge has decided about it
                await logs.wait_for("TOOL_RESPOND", count=1, call_sid=sid)
            stats = handle.statistics()
            caller.hangup()
        await handle.ended.wait()
    session = rig.sim.sessions[0]
    [call_id] = call_ids(session)
    [output] = outputs(session)
    assert output["call_id"] == call_id
    # Whatever happened to the tool, its response never started one of ours by itself.
    assert not [c for c in tool_creates(session) if c["metadata"].get("bridge_for")]
    if tool == "lookup_order":  # on_barge_in = "cancel"
        assert json.loads(output["output"])["error"] == "cancelled"
        [cancel] = rig.app.cancels()
        assert cancel.json()["call_id"] == call_id
        assert (stats.tool_calls_cancelled, stats.tool_results_dropped) == (1, 1)
    else:  # on_barge_in = "finish": delivered, silently
        assert json.loads(output["output"]) == {"ok": True, "tool": "book_table"}
        assert rig.app.cancels() == []
        assert stats.tool_outputs_silent == 1


# -- exits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("goodbye_ms", [2200, 0], ids=["said-goodbye", "asked-for-goodbye"])
async def test_end_call_hangs_up_only_after_the_goodbye_was_heard(
    goodbye_ms: int, autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    options = sim_options(
        tool_calls=(SimToolCall(1, "end_call", '{"reason": "done"}', say_first_ms=goodbye_ms),),
        short_reply_ms=1800,
    )
    script = CallerScript(utterances=(ask(),), hangup=At(60_000))
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(nursery, sim_options=options)
        caller, report = await run_call(rig, script)
    session = rig.sim.sessions[0]
    # The bridge closed the stream normally, and the caller had heard the whole goodbye.
    assert report.close is not None
    assert (report.close.by, report.close.code) == ("bridge", 1000)
    goodbye = [i for i in session.conversation if i.role == "assistant"][-1]
    assert report.heard_ms_by_item[goodbye.id] == goodbye.audio_ms
    assert goodbye.audio_ms == (goodbye_ms or 1800)
    if not goodbye_ms:
        assert [c["metadata"]["bridge_purpose"] for c in tool_creates(session)] == ["goodbye"]
    # One REST request, Status=completed, before the stream closed; no fallback hang-up.
    [rest] = rig.rest.hangups_for(report.call_sid)
    assert rest.form == {"Status": ["completed"]}
    closed_at = caller.origin + report.close.t_ms / 1000.0
    assert rest.received_at <= closed_at
    last_heard = max(s.end for s in caller.playback.segments())
    assert last_heard <= rest.received_at + 1e-6
    [end] = logs.tagged("CALL_END", report.call_sid)
    assert "reason=end_call" in end
    assert_session_conforms(session)


@pytest.mark.parametrize("twilio_status", [200, 400])
async def test_transfer_redirects_with_dial_after_the_last_words_or_speaks_the_failure(
    twilio_status: int, autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    options = sim_options(
        tool_calls=(SimToolCall(1, "transfer_call", '{"destination": "support"}', 1500),)
    )
    # The failure is spoken right after the notice (one AI turn at the caller), then hang up.
    script = CallerScript(utterances=(ask(),), hangup=AfterAiEnds(turn=2, delay_ms=500))
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(nursery, sim_options=options)
        rig.rest.status = twilio_status
        caller, report = await run_call(rig, script)
    session = rig.sim.sessions[0]
    twiml = "<Response><Dial><Sip>sip:support@pbx.example.com</Sip></Dial></Response>"
    [rest] = rig.rest.hangups_for(report.call_sid)
    assert rest.form == {"Twiml": [twiml]}
    before = [s.end for s in caller.playback.segments() if s.start < rest.received_at]
    assert max(before) <= rest.received_at + 1e-6  # the notice was heard first
    [end] = logs.tagged("CALL_END", report.call_sid)
    if twilio_status == 200:
        assert "reason=transferred to support" in end
        assert report.close is not None
        assert (report.close.by, report.close.code) == ("bridge", 1000)
    else:
        assert "reason=twilio_stop" in end  # the call went on; the caller hung up later
        notes = [
            e["item"]["content"][0]["text"]
            for e in received(session, "conversation.item.create")
            if e["item"]["type"] == "message"
        ]
        assert any("did not work" in n for n in notes)
        spoken = [r for r in session.responses.values() if r.created_at >= rest.received_at]
        [failure] = spoken  # ... and the model said so, heard in full
        assert report.heard_ms_by_item[failure.items[0]] == failure.audio_ms[failure.items[0]]


async def test_a_session_lost_while_a_tool_runs_gives_its_result_to_the_next_one_as_a_note(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    # The tool takes 3 s; the session that made the call is closed while it runs.
    options = sim_options(tool_calls=(SimToolCall(1, "lookup_order", ORDER),))
    script = CallerScript(utterances=(ask(),), hangup=At(14_000))
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(
            nursery, sim_options=options, tools={"lookup_order": ToolBehaviour(delay_s=3.0)}
        )
        caller = rig.caller(script)
        reports: list[CallerReport] = []

        async def run() -> None:
            reports.append(await caller.run())

        async with trio.open_nursery() as inner:
            inner.start_soon(run)
            sid = caller.options.call_sid
            await logs.wait_for("TOOL_CALL", call_sid=sid)
            rig.sim.sessions[0].close(1011)
            handle = await rig.server.registry.wait_for_call(sid)
        await handle.ended.wait()
    [report] = reports
    lost, healed = rig.sim.sessions
    [call_id] = call_ids(lost)
    # No session got an output: the lost one was gone, the new one never had the call_id.
    assert outputs(lost) == []
    assert outputs(healed) == []
    # The result went to the new session as text, and the model answered the caller from it.
    [(noted_at, note)] = [
        (t, e["item"]["content"][0]["text"])
        for t, e in healed.received
        if e["type"] == "conversation.item.create" and "lookup_order" in json.dumps(e)
    ]
    assert '"status":"shipped"' in note
    [answer] = [r for r in healed.responses.values() if r.created_at >= noted_at]
    [item] = answer.items
    assert report.heard_ms_by_item[item] == answer.audio_ms[item]
    # One outcome for the call, logged once; the call ended as the caller chose.
    [outcome] = logs.tagged("TOOL_RESULT", sid)
    assert f"call_id={call_id} outcome=ok" in outcome
    assert "session was lost" in outcome
    assert handle.statistics().upstream_restores == 1
    [end] = logs.tagged("CALL_END", sid)
    assert "reason=twilio_stop" in end
    assert logs.tagged("CALL_ERROR", sid) == []
    assert call_tasks_alive(sid) == []
    assert_session_conforms(healed)


# -- call events ----------------------------------------------------------------------------


async def test_call_events_arrive_signed_in_order_with_the_heard_transcript(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    options = sim_options(
        tool_calls=(SimToolCall(1, "lookup_order", ORDER),),
        caller_transcripts=("Where is my order?", "No wait, stop."),
    )
    script = CallerScript(
        utterances=(ask(), Utterance(900, 2, AfterAiStarts(turn=2, delay_ms=1200))),
        hangup=AfterReply(300),
    )
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(nursery, sim_options=options)
        _, report = await run_call(rig, script)
    events = rig.app.events()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert rig.app.bad_signatures == 0
    kinds = [e["type"] for e in events]
    assert kinds[0] == "call.started"
    assert kinds[-1] == "call.ended"
    assert {"tool.called", "barge_in", "transcript"} <= set(kinds)
    control = f"http://127.0.0.1:{rig.server.port}/calls/{report.call_sid}"
    assert {(e["call_sid"], e["control_url"]) for e in events} == {(report.call_sid, control)}
    said = [(e["data"]["role"], e["data"]["text"]) for e in events if e["type"] == "transcript"]
    assert ("caller", "Where is my order?") in said
    [cut] = [e["data"] for e in events if e["type"] == "transcript" and e["data"]["truncated"]]
    [barge_in] = [e["data"] for e in events if e["type"] == "barge_in"]
    [truncated] = barge_in["truncated"]
    assert (cut["item_id"], cut["heard_ms"]) == (truncated["item_id"], truncated["heard_ms"])
    whole = cut["text"].split()
    assert (
        0
        < len(whole)
        < len(
            next(
                i.transcript for i in rig.sim.sessions[0].conversation if i.id == cut["item_id"]
            ).split()
            or whole
        )
        + 1
    )
    [called] = [e["data"] for e in events if e["type"] == "tool.called"]
    assert called["tool"] == "lookup_order"
    assert called["arguments"] == {"order_id": "4217"}
    ended = events[-1]["data"]
    assert ended["reason"] == "twilio_stop"
    assert ended["statistics"]["tool_calls"] == 1
    assert ended["statistics"]["events_dropped"] == 0


async def test_a_full_events_queue_drops_and_counts_and_never_blocks_the_call(
    autojump_clock: MockClock, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_link, "EVENTS_QUEUE", 2)
    monkeypatch.setattr(app_link, "EVENT_TIMEOUT_S", 30.0)
    options = sim_options(tool_calls=(SimToolCall(1, "lookup_order", ORDER),))
    script = CallerScript(utterances=(ask(),), hangup=AfterReply(500))
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(nursery, sim_options=options)
        rig.app.events_delay_s = 25.0
        caller = rig.caller(script)
        report = await caller.run()
        handle = await rig.server.registry.wait_for_call(report.call_sid)
        await handle.ended.wait()
    stats = handle.statistics()
    assert stats.events_dropped >= 1
    assert stats.tool_calls == 1
    assert report.ai_turns[-1].heard_ms >= REPLY_MS - 100  # the call was not held up


# -- reaching the replica that holds the call ----------------------------------------------


async def test_the_control_url_in_a_tool_request_takes_a_note_to_the_call(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    options = sim_options(tool_calls=(SimToolCall(1, "lookup_order", ORDER),))
    script = CallerScript(utterances=(ask(),), hangup=AfterAiEnds(turn=3, delay_ms=500))
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(nursery, sim_options=options, events=False)
        caller = rig.caller(script)
        async with trio.open_nursery() as inner:
            inner.start_soon(caller.run)
            handle = await rig.server.registry.wait_for_call(caller.options.call_sid)
            await caller.wait_ai_turn_ended(2)
            [tool] = rig.app.tool_calls()
            control_url = tool.json()["control_url"]
            async with httpx.AsyncClient(headers=CONTROL_AUTH) as client:
                reply = await client.post(
                    f"{control_url}/notes",
                    json={
                        "text": "The order was upgraded to express.",
                        "respond": True,
                        "epoch": tool.json()["epoch"],
                    },
                )
            assert reply.status_code == 202
        await handle.ended.wait()
    notes = [
        e["item"]["content"][0]["text"]
        for e in received(rig.sim.sessions[0], "conversation.item.create")
        if e["item"]["type"] == "message"
    ]
    assert notes == ["The order was upgraded to express."]


async def test_bridge_internal_url_names_the_replica_in_every_control_url(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    options = sim_options(tool_calls=(SimToolCall(1, "lookup_order", ORDER),))
    script = CallerScript(utterances=(ask(),), hangup=AfterReply(300))
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(
            nursery, sim_options=options, internal_url="http://bridge-7.internal:8080/"
        )
        _, report = await run_call(rig, script)
    [tool] = rig.app.tool_calls()
    expected = f"http://bridge-7.internal:8080/calls/{report.call_sid}"
    assert tool.json()["control_url"] == expected
    assert {e["control_url"] for e in rig.app.events()} == {expected}


# -- the README's verification snippet ------------------------------------------------------


def readme_snippet() -> str:
    text = README.read_text()
    match = re.search(r"```python\n(# verify_bridge_signature\n.*?)```", text, re.S)
    assert match, "README: the signature verification snippet is missing"
    return match.group(1)


async def test_the_readme_snippet_verifies_a_real_request_and_refuses_a_forged_one(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    options = sim_options(tool_calls=(SimToolCall(1, "lookup_order", ORDER),))
    script = CallerScript(utterances=(ask(),), hangup=AfterReply(300))
    with trio.fail_after(TIMEOUT_S):
        rig = await start_tool_rig(nursery, sim_options=options, events=False)
        await run_call(rig, script)
    [tool] = rig.app.tool_calls()
    namespace: dict[str, Any] = {}
    exec(readme_snippet(), namespace)
    verify = namespace["verify_bridge_signature"]
    header = tool.headers[SIGNATURE_HEADER.lower()]
    assert verify(SECRET.encode(), tool.body, header)
    assert not verify(SECRET.encode(), tool.body.replace(b"4217", b"4218"), header)
    assert not verify(b"another secret", tool.body, header)
