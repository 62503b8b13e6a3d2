"""The tool-call rules on the sans-IO core (bridge/core/tools.py), with a fake clock."""

from __future__ import annotations

import json

import pytest

from bridge.core.actions import Action, EndCall, Log, SendUpstream
from bridge.core.app_work import CancelTool, RunExit, RunTool
from bridge.core.call_events import BargeInHappened, ToolCalled, Transcript
from bridge.core.ending import CallEnd, EndReason
from bridge.core.realtime_client import (
    FunctionCallOutput,
    ReplayMessage,
    ResponseCreate,
    SystemMessage,
)
from bridge.core.tools import DEFAULT_LEAD_S, LEAD_MARGIN_S, MAX_RUNNING, ToolResult
from bridge.core.twilio import Stop
from tests.core_driver import Driver
from tests.test_core_continuity import reopen
from tests.tool_support import creates, events, function_call, outputs, tool_driver, work


def result(driver: Driver, call_id: str, output: str = '{"status":"shipped"}') -> list:  # type: ignore[type-arg]
    return driver.record(driver.core.on_tool_result(call_id, ToolResult("ok", output), driver.now))


def speaking(driver: Driver, response_id: str, item_id: str, ms: int = 2000) -> None:
    """A response whose audio is playing at the caller."""
    driver.response_created(response_id)
    driver.item_added(response_id, item_id)
    driver.audio(response_id, item_id, ms)
    driver.play(200)


def test_a_call_runs_in_the_link_and_its_output_gets_one_response() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    actions = function_call(d, "resp_1", "call_1", "lookup_order", '{"order_id": "42"}')
    [run] = work(actions)
    assert run == RunTool("call_1", "lookup_order", CATALOG_URL, 8.0, '{"order_id": "42"}', 0)
    [called] = events(actions)
    assert called == ToolCalled("lookup_order", "call_1", "url", {"order_id": "42"}, 0)
    assert creates(d.response_done("resp_1")) == []
    d.now += 0.4
    answer = result(d, "call_1")
    [out] = outputs(answer)
    assert (out.call_id, out.output) == ("call_1", '{"status":"shipped"}')
    [create] = creates(answer)
    assert (create.purpose, create.answers, create.tool_choice) == ("tools", "resp_1", None)
    [line] = [a for a in answer if isinstance(a, Log) and a.tag == "TOOL_RESULT"]
    assert line.fields["record"]["latency_ms"] == pytest.approx(400.0)


CATALOG_URL = "http://127.0.0.1:9/tools/lookup_order"


def test_parallel_calls_are_answered_together_with_one_response_create() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    function_call(d, "resp_1", "call_a", "lookup_order")
    function_call(d, "resp_1", "call_b", "lookup_order")
    # A result before the response is done: its output goes at once, the response waits.
    early = result(d, "call_b")
    assert len(outputs(early)) == 1
    assert creates(early) == []
    assert creates(d.response_done("resp_1")) == []
    last = result(d, "call_a")
    assert [o.call_id for o in outputs(last)] == ["call_a"]
    assert len(creates(last)) == 1
    assert len(creates(d.actions)) == 1


def test_the_response_waits_for_the_slot_and_for_the_caller() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    function_call(d, "resp_1", "call_1", "lookup_order")
    d.response_done("resp_1")
    # The caller talks while the AI is silent (no barge-in); the server replies to them.
    d.event({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u"})
    assert creates(result(d, "call_1")) == []  # the caller is speaking
    d.speech_stopped()  # the server's reply now has the output in its context
    assert creates(d.actions) == []
    assert any(a.fields["record"]["decision"] == "answered" for a in d.logs("TOOL_RESPOND"))


def test_a_result_after_a_barge_in_is_delivered_but_never_starts_a_response() -> None:
    d = tool_driver()
    speaking(d, "resp_1", "item_1")
    function_call(d, "resp_1", "call_1", "book_table")  # on_barge_in = "finish"
    d.response_done("resp_1")
    d.speech_started()
    assert d.barge_ins()
    assert d.core.barge_in_epoch == 1
    assert outputs(d.actions) == []  # finish: nothing cancelled
    d.speech_stopped()
    late = result(d, "call_1")
    assert [o.call_id for o in outputs(late)] == ["call_1"]
    assert creates(late) == []
    assert d.core.statistics().tool_outputs_silent == 1
    assert creates(d.actions) == []


def test_a_pending_call_is_cancelled_on_barge_in_and_its_late_result_dropped() -> None:
    d = tool_driver()
    speaking(d, "resp_1", "item_1")
    function_call(d, "resp_1", "call_1", "lookup_order")  # on_barge_in = "cancel"
    actions = d.speech_started()
    [out] = outputs(actions)
    assert json.loads(out.output)["error"] == "cancelled"
    assert work(actions) == [CancelTool("call_1", "lookup_order", CATALOG_URL, "barge_in")]
    late = result(d, "call_1")
    assert outputs(late) == []
    assert creates(late) == []
    stats = d.core.statistics()
    assert (stats.tool_calls_cancelled, stats.tool_results_dropped) == (1, 1)
    assert len(outputs(d.actions)) == 1


def test_calls_cut_short_or_of_a_cancelled_response_never_run() -> None:
    d = tool_driver()
    speaking(d, "resp_1", "item_1")
    d.speech_started()  # resp_1 is cancelled
    actions = function_call(d, "resp_1", "call_late", "lookup_order")
    d.response_created("resp_2")
    actions += function_call(d, "resp_2", "call_cut", "lookup_order", '{"or', status="incomplete")
    assert work(actions) == []
    assert [json.loads(o.output)["error"] for o in outputs(actions)] == ["cut_off", "cut_off"]


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [("no_such_tool", "{}", "unknown_tool"), ("lookup_order", "[1]", "bad_arguments")],
)
def test_a_bad_call_gets_an_error_output_the_model_can_speak(
    name: str, arguments: str, error: str
) -> None:
    d = tool_driver()
    d.response_created("resp_1")
    actions = function_call(d, "resp_1", "call_1", name, arguments)
    assert work(actions) == []
    [out] = outputs(actions)
    assert json.loads(out.output)["error"] == error
    assert len(creates(d.response_done("resp_1"))) == 1


def test_more_calls_than_may_run_are_answered_busy() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    for k in range(MAX_RUNNING + 1):
        function_call(d, "resp_1", f"call_{k}", "lookup_order")
    assert len([w for w in work(d.actions) if isinstance(w, RunTool)]) == MAX_RUNNING
    [busy] = outputs(d.actions)
    assert json.loads(busy.output)["error"] == "busy"


# -- the filler -----------------------------------------------------------------------------


def test_the_filler_is_asked_for_once_ahead_of_the_silence_by_the_measured_lead() -> None:
    d = tool_driver()
    # A first response measures the upstream's first-audio latency: 0.45 s.
    d.response_created("resp_0")
    d.now += 0.45
    d.item_added("resp_0", "item_0")
    d.audio("resp_0", "item_0", 200)
    d.audio_done("resp_0", "item_0")
    d.response_done("resp_0")
    d.play(400)
    d.response_created("resp_1")
    function_call(d, "resp_1", "call_1", "lookup_order")
    d.response_done("resp_1")
    deadline = d.core.tools_deadline()
    assert deadline == pytest.approx(d.now + 1.0 - 0.45 - LEAD_MARGIN_S)
    assert d.core.on_tools_timer(deadline - 0.01) == []
    d.now = deadline
    filler = d.record(d.core.on_tools_timer(d.now))
    [create] = creates(filler)
    assert (create.purpose, create.tool_choice, create.answers) == ("filler", "none", "resp_1")
    assert d.core.statistics().tool_fillers == 1
    # Once per wait: no second filler, however long the tool takes.
    d.response_created("resp_f", {"bridge_request": create.request_tag})
    d.response_done("resp_f")
    assert d.core.tools_deadline() is None
    # The answer follows the result.
    assert len(creates(result(d, "call_1"))) == 1


def test_the_filler_waits_while_the_ai_is_still_heard_and_counts_silence_from_then() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    d.now += 0.2  # first audio 200 ms after response.created: the lead
    d.item_added("resp_1", "item_1")
    d.audio("resp_1", "item_1", 1500)  # "Let me check that for you."
    function_call(d, "resp_1", "call_1", "lookup_order")
    d.response_done("resp_1")
    first = d.core.tools_deadline()
    assert first == pytest.approx(d.now + 1.0 - 0.2 - LEAD_MARGIN_S)
    d.play(800)
    assert creates(d.record(d.core.on_tools_timer(d.now))) == []  # still speaking: look again
    d.play(900)  # the sentence has been heard
    heard_at = d.core.ledger.last_ack_at
    assert heard_at is not None
    assert d.core.tools_deadline() == pytest.approx(heard_at + 1.0 - 0.2 - LEAD_MARGIN_S)


def test_before_any_measurement_the_lead_is_the_default() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    function_call(d, "resp_1", "call_1", "lookup_order")
    d.response_done("resp_1")
    lead = DEFAULT_LEAD_S + LEAD_MARGIN_S
    assert d.core.tools_deadline() == pytest.approx(d.now + 1.0 - lead)


def test_no_filler_once_the_ai_has_answered_the_caller_or_after_a_barge_in() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    function_call(d, "resp_1", "call_1", "lookup_order")
    d.response_done("resp_1")
    d.response_created("resp_2")  # the server answered the caller meanwhile
    d.now = d.core.tools_deadline() or 0.0
    assert creates(d.record(d.core.on_tools_timer(d.now))) == []
    assert d.core.tools_deadline() is None


# -- exits ----------------------------------------------------------------------------------


def test_end_call_waits_until_the_goodbye_in_its_own_response_is_heard() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    d.item_added("resp_1", "item_bye")
    d.audio("resp_1", "item_bye", 1200)
    d.audio_done("resp_1", "item_bye")
    actions = function_call(d, "resp_1", "call_end", "end_call", '{"reason": "done"}')
    [out] = outputs(actions)
    assert json.loads(out.output)["ok"] is True
    assert creates(d.response_done("resp_1")) == []  # it already said goodbye
    d.play(1000)
    assert work(d.actions) == []  # 200 ms of goodbye still to be heard
    d.play(400)
    assert work(d.actions) == [RunExit("call_end", "end_call", None)]
    done = d.record(d.core.on_exit_result("call_end", True, "hung up (HTTP 200)", d.now))
    [end] = [a for a in done if isinstance(a, EndCall)]
    assert end.end.reason is EndReason.END_CALL


def test_end_call_without_a_goodbye_asks_for_one_then_waits_for_it_to_be_heard() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    function_call(d, "resp_1", "call_end", "end_call")
    [goodbye] = creates(d.response_done("resp_1"))
    assert (goodbye.purpose, goodbye.tool_choice) == ("goodbye", "none")
    d.response_created("resp_2", {"bridge_request": goodbye.request_tag})
    d.item_added("resp_2", "item_bye")
    d.audio("resp_2", "item_bye", 800)
    d.audio_done("resp_2", "item_bye")
    d.play(300)
    d.response_done("resp_2")
    assert work(d.actions) == []
    d.play(700)
    assert work(d.actions) == [RunExit("call_end", "end_call", None)]


def test_a_barge_in_during_the_goodbye_aborts_the_end_and_the_call_goes_on() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    d.item_added("resp_1", "item_bye")
    d.audio("resp_1", "item_bye", 2000)
    function_call(d, "resp_1", "call_end", "end_call")
    d.response_done("resp_1")
    d.play(500)
    actions = d.speech_started()  # "wait, one more thing!"
    [note] = [
        a.event
        for a in actions
        if isinstance(a, SendUpstream) and isinstance(a.event, SystemMessage)
    ]
    assert "interrupted" in note.text
    d.speech_stopped()
    d.play(3000)
    assert work(d.actions) == []
    assert d.core.tool_exit is None
    assert [a.fields["record"]["step"] for a in d.logs("CALL_EXIT")] == ["aborted"]


def test_a_twilio_stop_during_the_exit_request_is_the_exit_end() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    function_call(d, "resp_1", "call_end", "end_call")
    [goodbye] = creates(d.response_done("resp_1"))
    d.response_created("resp_2", {"bridge_request": goodbye.request_tag})
    d.response_done("resp_2")  # no audio at all: nothing to wait for
    assert work(d.actions) == [RunExit("call_end", "end_call", None)]
    [end] = d.record(d.core.on_twilio_event(Stop(), d.now))
    assert isinstance(end, EndCall)
    assert end.end.reason is EndReason.END_CALL


def test_transfer_dials_a_configured_destination_and_a_failure_is_spoken() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    bad = function_call(d, "resp_1", "call_x", "transfer_call", '{"destination": "+15550000"}')
    assert json.loads(outputs(bad)[0].output)["error"] == "bad_arguments"
    [spoken] = creates(d.response_done("resp_1"))  # the model tells the caller
    d.response_created("resp_2", {"bridge_request": spoken.request_tag})
    function_call(d, "resp_2", "call_t", "transfer_call", '{"destination": "support"}')
    [notice] = creates(d.response_done("resp_2"))
    assert notice.purpose == "transfer"
    d.response_created("resp_3", {"bridge_request": notice.request_tag})
    d.response_done("resp_3")
    assert work(d.actions)[-1] == RunExit("call_t", "transfer_call", "sip:support@pbx.example.com")
    failed = d.record(d.core.on_exit_result("call_t", False, "HTTP 400, code 21220", d.now))
    assert not [a for a in failed if isinstance(a, EndCall)]
    [note] = [
        a.event
        for a in failed
        if isinstance(a, SendUpstream) and isinstance(a.event, SystemMessage)
    ]
    assert "did not work" in note.text
    assert len(creates(failed)) == 1  # spoken; the call goes on


def test_the_exit_goes_on_when_marks_never_come_back() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    d.item_added("resp_1", "item_bye")
    d.audio("resp_1", "item_bye", 500)
    d.audio_done("resp_1", "item_bye")
    d.pump_tx()
    function_call(d, "resp_1", "call_end", "end_call")
    d.response_done("resp_1")
    cap = d.core.tools_deadline()
    assert cap is not None
    assert cap <= d.now + 0.5 + 2.0 + 1e-6
    d.now = cap  # no mark echoed at all
    assert work(d.record(d.core.on_tools_timer(d.now))) == [RunExit("call_end", "end_call", None)]


# -- call events ----------------------------------------------------------------------------


def test_ai_transcripts_are_sent_as_heard_whole_or_cut_and_caller_ones_at_once() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    d.item_added("resp_1", "item_1")
    d.audio("resp_1", "item_1", 400)
    d.audio_done("resp_1", "item_1")
    d.event(
        {
            "type": "response.output_audio_transcript.done",
            "response_id": "resp_1",
            "item_id": "item_1",
            "transcript": "Hello there.",
        }
    )
    assert events(d.actions) == []  # not heard yet
    d.response_done("resp_1")
    d.play(500)
    assert events(d.actions) == [Transcript("ai", "item_1", "Hello there.", False, None, None)]
    d.actions.clear()
    # Cut after 1 s of 4 s: a quarter of the words.
    d.response_created("resp_2")
    d.item_added("resp_2", "item_2")
    for word in ["one", "two", "three", "four", "five", "six", "seven", "eight"]:
        d.event(
            {
                "type": "response.output_audio_transcript.delta",
                "response_id": "resp_2",
                "item_id": "item_2",
                "delta": word + " ",
            }
        )
    d.audio("resp_2", "item_2", 4000)
    d.play(1000)
    d.speech_started()
    d.event(
        {
            "type": "response.output_audio_transcript.done",
            "response_id": "resp_2",
            "item_id": "item_2",
            "transcript": "",
        }
    )
    sent = events(d.actions)
    assert isinstance(sent[0], BargeInHappened)
    [cut] = [e for e in sent if isinstance(e, Transcript)]
    assert (cut.text, cut.truncated, cut.audio_ms) == ("one two", True, 4000)
    assert cut.heard_ms is not None
    assert abs(cut.heard_ms - 1000) <= 40
    d.event(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "u1",
            "content_index": 0,
            "transcript": "No, stop.",
        }
    )
    assert events(d.actions)[-1] == Transcript("caller", "u1", "No, stop.", False, None, None)


def test_without_an_events_url_no_event_is_made() -> None:
    d = tool_driver(call_events=False)
    speaking(d, "resp_1", "item_1")
    function_call(d, "resp_1", "call_1", "lookup_order")
    d.speech_started()
    assert events(d.actions) == []


# -- a lost session (bridge/core/tools.py rule 6) ------------------------------------------


def _lost_mid_call(d: Driver) -> None:
    """The model called ``lookup_order`` (the call runs), then its session was lost."""
    d.response_created("resp_1")
    function_call(d, "resp_1", "call_1", "lookup_order")
    d.response_done("resp_1")
    d.record(d.core.on_upstream_lost(d.now, CallEnd(EndReason.OPENAI_CLOSED, "1011")))


def _system_texts(actions: list[Action]) -> list[str]:
    return [
        a.event.text
        for a in actions
        if isinstance(a, SendUpstream) and isinstance(a.event, SystemMessage)
    ]


def test_a_result_after_the_session_was_replaced_is_a_note_never_an_output() -> None:
    d = tool_driver()
    _lost_mid_call(d)
    [lost] = d.logs("TOOL_RESPOND")
    assert lost.fields["record"]["decision"] == "session_lost"
    reopen(d)
    answer = result(d, "call_1")
    assert outputs(answer) == []  # the new session never had call_1
    [note] = _system_texts(answer)
    assert "lookup_order" in note
    assert '{"status":"shipped"}' in note
    [create] = creates(answer)  # the model answers the caller from the note
    assert create.purpose is None
    [line] = [a for a in answer if isinstance(a, Log) and a.tag == "TOOL_RESULT"]
    assert line.fields["record"]["outcome"] == "ok"
    assert "session was lost" in line.fields["record"]["detail"]
    assert result(d, "call_1") == []  # one outcome per call, whatever comes later


def test_a_result_while_healing_goes_to_the_next_session_with_the_conversation() -> None:
    d = tool_driver()
    _lost_mid_call(d)
    waiting = result(d, "call_1", '{"status":"delayed"}')
    assert [a for a in waiting if isinstance(a, SendUpstream)] == []
    assert d.logs("NOTE_QUEUED")
    sent = reopen(d)
    replayed = [a.event.text for a in sent if isinstance(a.event, ReplayMessage)]
    assert any('{"status":"delayed"}' in text for text in replayed)
    assert not [a for a in sent if isinstance(a.event, FunctionCallOutput)]
    assert len([a for a in sent if isinstance(a.event, ResponseCreate)]) == 1


def test_a_barge_in_after_the_loss_cancels_without_an_output() -> None:
    d = tool_driver()
    _lost_mid_call(d)
    reopen(d)
    speaking(d, "resp_2", "item_2")
    cut = d.speech_started()
    assert outputs(cut) == []
    assert work(cut) == [CancelTool("call_1", "lookup_order", CATALOG_URL, "barge_in")]
    [late] = result(d, "call_1")
    assert isinstance(late, Log)
    assert late.tag == "TOOL_CANCELLED"


def test_outputs_the_lost_session_had_reach_the_next_one_as_text() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    function_call(d, "resp_1", "call_1", "lookup_order")
    result(d, "call_1", '{"status":"shipped","arrives":"Thursday"}')
    d.record(d.core.on_upstream_lost(d.now, CallEnd(EndReason.OPENAI_CLOSED, "1011")))
    replayed = [a.event.text for a in reopen(d) if isinstance(a.event, ReplayMessage)]
    assert any("Thursday" in text for text in replayed)


def test_an_exit_whose_goodbye_was_lost_asks_the_next_session_for_it() -> None:
    d = tool_driver()
    d.response_created("resp_1")
    function_call(d, "resp_1", "call_end", "end_call")
    [goodbye] = creates(d.response_done("resp_1"))
    d.response_created("resp_2", {"bridge_request": goodbye.request_tag})
    d.record(d.core.on_upstream_lost(d.now, CallEnd(EndReason.OPENAI_CLOSED, "1011")))
    again = [a.event for a in reopen(d) if isinstance(a.event, ResponseCreate)]
    assert [c.purpose for c in again] == ["goodbye"]
    d.response_created("resp_3", {"bridge_request": again[0].request_tag})
    d.item_added("resp_3", "item_bye")
    d.audio("resp_3", "item_bye", 300)
    d.audio_done("resp_3", "item_bye")
    d.response_done("resp_3")
    d.play(600)
    assert work(d.actions)[-1] == RunExit("call_end", "end_call", None)
