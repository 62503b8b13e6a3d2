"""Stateful fuzzing of the call core and the playout ledger (hypothesis).

Random interleavings of model events, Twilio mark echoes, clock steps, local onsets and
notes. Invariants checked after every step:

* nothing raises;
* no frame of a cancelled response is handed to the TX writer after its barge-in;
* an item's heard position never exceeds the audio received for it;
* every truncation is at 1..received ms, never 0, never beyond what was received;
* marks from older generations are never counted as played.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bridge.core.actions import Action, BargeIn, Log, SendUpstream
from bridge.core.app_work import RunExit, RunTool
from bridge.core.ending import CallEnd, EndReason
from bridge.core.realtime_client import ResponseCreate
from bridge.core.tools import ToolResult
from tests.core_driver import Driver
from tests.test_core_continuity import reopen
from tests.tool_support import CATALOG, creates, function_call, outputs, work


class CallCoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.driver = Driver.ready(fast_barge_in="duck", lead_ms=60)
        self.response_seq = 0
        self.response: str | None = None
        self.items: list[str] = []
        self.cancelled_at: dict[str, int] = {}
        """response id → number of frames sent when it was cancelled."""
        self.returned_marks: list[str] = []

    @property
    def core(self):  # type: ignore[no-untyped-def]
        return self.driver.core

    @rule()
    def response_created(self) -> None:
        self.response_seq += 1
        self.response = f"resp_{self.response_seq}"
        self.items = []
        self.driver.response_created(self.response)

    @rule(ms=st.integers(1, 400), new_item=st.booleans())
    def audio(self, ms: int, new_item: bool) -> None:
        if self.response is None:
            return
        if new_item or not self.items:
            self.items.append(f"item_{self.response_seq}_{len(self.items)}")
            self.driver.item_added(self.response, self.items[-1])
        self.driver.audio(self.response, self.items[-1], ms)

    @rule()
    def audio_done(self) -> None:
        if self.response is not None and self.items:
            self.driver.audio_done(self.response, self.items[-1])

    @rule(status=st.sampled_from(["completed", "cancelled"]))
    def response_done(self, status: str) -> None:
        if self.response is not None:
            self.driver.response_done(self.response, status)

    @rule(ms=st.integers(1, 300))
    def play(self, ms: int) -> None:
        self.driver.play(ms)

    @rule()
    def speech_started(self) -> None:
        before = len(self.driver.barge_ins())
        pending = [str(s.mark) for s in self.core.ledger.in_flight]
        self.driver.speech_started()
        plans = self.driver.barge_ins()[before:]
        for plan in plans:
            for response_id in plan.cancelled_response_ids:
                self.cancelled_at.setdefault(response_id, len(self.driver.sent_frames))
            if plan.clear is not None:
                self.returned_marks.extend(pending)

    @rule()
    def speech_stopped(self) -> None:
        self.driver.speech_stopped()

    @rule()
    def local_onset(self) -> None:
        pending = [str(s.mark) for s in self.core.ledger.in_flight]
        actions = self.driver.record(self.core.on_local_onset(self.driver.now))
        if any(isinstance(a, BargeIn) and a.clear for a in actions):
            self.returned_marks.extend(pending)

    @rule(ms=st.integers(0, 1000))
    def timer(self, ms: int) -> None:
        self.driver.now += ms / 1000.0
        self.driver.record(self.core.on_timer(self.driver.now))

    @rule()
    def echo_returned_marks(self) -> None:
        played = self.core.statistics().marks_played
        for name in self.returned_marks:
            self.driver.echo_mark(name)
        self.returned_marks.clear()
        assert self.core.statistics().marks_played == played

    @rule(respond=st.booleans(), confirm=st.booleans())
    def note(self, respond: bool, confirm: bool) -> None:
        self.driver.record(
            self.core.submit_note("n", respond=respond, awaits_confirmation=confirm, epoch=None)
        )

    @invariant()
    def no_cancelled_audio_is_sent_after_its_barge_in(self) -> None:
        for index, decision in enumerate(self.driver.sent_frames):
            cancelled_at = self.cancelled_at.get(decision.frame.response_id)
            assert cancelled_at is None or index < cancelled_at

    @invariant()
    def heard_never_exceeds_received(self) -> None:
        for item in self.core.ledger.items.values():
            assert self.core.ledger.heard_bytes(item.item_id, self.driver.now) >= 0
            assert (
                self.core.ledger.heard_bytes(item.item_id, self.driver.now) <= item.received_bytes
            )

    @invariant()
    def truncations_are_valid(self) -> None:
        for plan in self.driver.barge_ins():
            for trunc in plan.truncations:
                assert 1 <= trunc.audio_end_ms <= trunc.received_ms


CallCoreMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestCallCoreFuzz = CallCoreMachine.TestCase


# -- tool calls ---------------------------------------------------------------------------


class ToolCallMachine(CallCoreMachine):
    """The same interleavings, plus function calls (URL tools with either barge-in flag,
    unknown tools, bad arguments, end_call/transfer_call), their results in any order, the
    tool timers, and the server creating the responses the bridge asked for. Proves:

    * no response is ever created from a stale epoch: a ``response.create`` answering a
      response's calls (tools, filler, goodbye, transfer notice) is only sent if no hard
      barge-in happened since those calls were made;
    * every ``call_id`` gets exactly one ``function_call_output``: never two (checked after
      every step), and, once every running call has its result, exactly one each; except a
      call still running when its session was lost (the upstream is lost and replaced, a
      result may come in between): it never gets one, from that session or any later;
    * every call has exactly one outcome (``TOOL_RESULT``) once every result is in.
    """

    def __init__(self) -> None:
        super().__init__()
        self.driver = Driver.ready(
            fast_barge_in="duck", lead_ms=60, tools=CATALOG, tool_filler_ms=1000, call_events=True
        )
        self.call_seq = 0
        self.calls: dict[str, str] = {}
        """call id → the response that made it."""
        self.epoch_at_call: dict[str, int] = {}
        """response id → hard barge-ins so far when it made its first call."""
        self.created_requests: set[str] = set()
        self.checked = 0
        self.sessions = 1
        self.session_of: dict[str, int] = {}
        """call id → the session (1, 2, ...) that made it."""
        self.outputs_checked = 0

    def hard_barge_ins(self, actions: list[Action]) -> int:
        return sum(1 for a in actions if isinstance(a, BargeIn) and not a.held)

    @rule(
        tool=st.sampled_from(
            ["lookup_order", "book_table", "no_such_tool", "end_call", "transfer_call"]
        ),
        good=st.booleans(),
        status=st.sampled_from(["completed", "completed", "incomplete"]),
    )
    def function_call(self, tool: str, good: bool, status: str) -> None:
        if self.response is None:
            return
        self.call_seq += 1
        call_id = f"call_{self.call_seq}"
        arguments = '{"destination": "sales"}' if tool == "transfer_call" else "{}"
        if not good:
            arguments = "[not an object"
        self.calls[call_id] = self.response
        self.session_of[call_id] = self.sessions
        self.epoch_at_call.setdefault(self.response, self.hard_barge_ins(self.driver.actions))
        function_call(self.driver, self.response, call_id, tool, arguments, status)

    @rule(
        tools=st.lists(
            st.sampled_from(["lookup_order", "book_table", "end_call", "no_such_tool"]),
            min_size=1,
            max_size=3,
        ),
        audio_ms=st.sampled_from([0, 0, 300, 1200]),
        done=st.booleans(),
    )
    def tool_turn(self, tools: list[str], audio_ms: int, done: bool) -> None:
        """A whole model turn with function calls: the response the bridge asked for if one
        is waiting, else one of the server's; maybe some speech first; maybe done."""
        self.requested_response_created()
        if self.response is None or self.response in self.epoch_at_call:
            self.response_created()
        assert self.response is not None
        if audio_ms:
            self.audio(audio_ms, new_item=True)
        for tool in tools:
            self.function_call(tool, good=True, status="completed")
        if done:
            self.response_done("completed")

    def running(self) -> list[str]:
        answered = {o.call_id for o in outputs(self.driver.actions)}
        return [
            w.call_id
            for w in work(self.driver.actions)
            if isinstance(w, RunTool) and w.call_id not in answered
        ] + [
            w.call_id
            for w in work(self.driver.actions)
            if isinstance(w, RunTool) and w.call_id in answered
        ]

    @rule(pick=st.integers(0, 20), outcome=st.sampled_from(["ok", "timeout", "http_status"]))
    def tool_result(self, pick: int, outcome: str) -> None:
        # Mostly calls still running; sometimes a late result of a cancelled one.
        candidates = self.running()
        if not candidates:
            return
        call_id = candidates[pick % len(candidates)]
        result = (
            ToolResult("ok", '{"ok":true}')
            if outcome == "ok"
            else ToolResult("timeout" if outcome == "timeout" else "http_status", detail="x")
        )
        self.driver.record(self.core.on_tool_result(call_id, result, self.driver.now))

    @rule(ms=st.integers(0, 1500))
    def tools_timer(self, ms: int) -> None:
        self.driver.now += ms / 1000.0
        self.driver.record(self.core.on_tools_timer(self.driver.now))

    @rule(ok=st.booleans())
    def exit_result(self, ok: bool) -> None:
        exits = [w for w in work(self.driver.actions) if isinstance(w, RunExit)]
        if exits:
            done = self.core.on_exit_result(exits[-1].call_id, ok, "x", self.driver.now)
            self.driver.record(done)

    @rule(result_while_healing=st.booleans())
    def session_lost_and_replaced(self, result_while_healing: bool) -> None:
        self.driver.record(
            self.core.on_upstream_lost(self.driver.now, CallEnd(EndReason.OPENAI_CLOSED, "x"))
        )
        if result_while_healing:
            self.tool_result(0, "ok")
        self.sessions += 1
        self.response = None
        self.items = []
        reopen(self.driver)

    @rule()
    def requested_response_created(self) -> None:
        asked = creates(self.driver.actions)
        waiting = [c for c in asked if c.request_tag not in self.created_requests]
        if not waiting:
            return
        request = waiting[0]
        self.created_requests.add(request.request_tag)
        self.response_seq += 1
        self.response = f"resp_{self.response_seq}"
        self.items = []
        self.driver.response_created(self.response, {"bridge_request": request.request_tag})

    @invariant()
    def no_response_is_created_from_a_stale_epoch(self) -> None:
        actions = self.driver.actions
        for index in range(self.checked, len(actions)):
            action = actions[index]
            if not (isinstance(action, SendUpstream) and isinstance(action.event, ResponseCreate)):
                continue
            answers = action.event.answers
            if answers is None:
                continue  # notes and greetings: the notes' rules
            epoch_then = self.hard_barge_ins(actions[:index])
            assert self.epoch_at_call[answers] == epoch_then, (action.event, epoch_then)
        self.checked = len(actions)

    @invariant()
    def never_two_outputs_for_one_call(self) -> None:
        ids = [o.call_id for o in outputs(self.driver.actions)]
        assert len(ids) == len(set(ids))
        assert set(ids) <= set(self.calls)

    @invariant()
    def outputs_go_only_to_the_session_that_made_the_call(self) -> None:
        new = outputs(self.driver.actions[self.outputs_checked :])
        assert all(self.session_of[o.call_id] == self.sessions for o in new)
        self.outputs_checked = len(self.driver.actions)

    def teardown(self) -> None:
        # Every running call gets its result; then each call has exactly one output.
        answered = {o.call_id for o in outputs(self.driver.actions)}
        for call_id in [c for c in self.running() if c not in answered]:
            self.driver.record(
                self.core.on_tool_result(call_id, ToolResult("ok", "{}"), self.driver.now)
            )
        ids = [o.call_id for o in outputs(self.driver.actions)]
        if self.sessions == 1:
            assert sorted(ids) == sorted(self.calls)
        outcomes = [
            a.fields["record"]["call_id"]
            for a in self.driver.actions
            if isinstance(a, Log) and a.tag == "TOOL_RESULT"
        ]
        assert sorted(outcomes) == sorted(self.calls)


ToolCallMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestToolCallFuzz = ToolCallMachine.TestCase
