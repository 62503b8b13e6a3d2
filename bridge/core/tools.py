"""Function calls of one call: the ledger and its rules, sans-IO.

The model calls a tool in a response (``response.output_item.done`` of a ``function_call``
item). The ledger decides what happens, as actions; the application link
(:mod:`bridge.runtime.app_link`) does the HTTP and REST work in its own task and reports
back. The rules:

1. **Exactly one output per call.** Every ``call_id`` the model makes gets exactly one
   ``function_call_output``: the application's JSON reply, or an error the model can speak
   about (timeout, HTTP status, invalid JSON, unreachable, bad arguments, unknown tool, cut
   off before it ran, cancelled by a barge-in). A late result of a cancelled call is dropped
   and counted, never a second output.
2. **One response for a response's calls.** The calls of one response form a *batch*; when
   the response is done and every call in it has its output, one ``response.create`` answers
   them all (metadata ``bridge_purpose=tools``, ``bridge_for=<the response>``). It waits for
   the response slot like every request (``response.done``), and for the caller to stop
   talking (if the caller spoke while the tool ran, the server's reply comes first and the
   results follow it).
3. **Barge-in (the seed's rule 3, for tools).** A batch made before the latest barge-in is
   *stale*: its outputs are still delivered, but it never starts a response by itself. A call
   still running when the caller barges in is, per tool (``on_barge_in``), either cancelled
   (an output saying so goes to the model at once, the application gets a cancel request,
   a late result is dropped and counted) or left to finish, silently. Calls of a response
   that was already cancelled are never run (an output says so).
4. **Filler.** If a batch's results are not back after ``BRIDGE_TOOL_FILLER_MS`` of silence
   at the caller, the model is asked, once per batch, to say in a few words that it is
   checking (``tool_choice: none``, so it cannot call again or guess a result). The request
   goes out earlier by the upstream's first-audio latency, measured on this call's own
   responses (``response.created`` → first audio delta; the largest of the last four, plus
   100 ms for the trips to the upstream and to the caller), so the caller hears the filler
   when the silence reaches the setting, not that much later. Why the model and not a
   shipped WAV: its voice and language are the conversation's (a recorded English "one
   moment" in another voice on a Hebrew call is worse than a short pause), the filler is in
   the model's context (it does not repeat it), and barge-in and playout accounting treat it
   like any other response; the measured cost, the first-audio latency, is what the lead
   removes.
5. **Exits** (``end_call``, ``transfer_call``). The output (``{"ok": true, ...}``) goes at
   once; the exit waits for the AI's last words: the calling response's own audio, or, when
   it had none, a short response the bridge asks for (goodbye / "I am transferring you").
   When that response is done and the playout ledger shows everything was *heard* (no queued
   audio, every mark echoed: the marks are what Twilio played, so a goodbye is never cut),
   the link does the REST work. A cap (the audio still unplayed plus 2 s) proceeds if marks
   never come back. A barge-in before that aborts the exit: the caller wanted to say
   something, the call goes on, and the model is told so (silently).
6. **A lost session** (the call heals with a new one: :meth:`ToolLedger.on_session_lost`).
   A ``call_id`` belongs to the session that made it; the new session is given the
   conversation as text and has never seen that id, so nothing is ever sent to it as a
   ``function_call_output``. A call still running is *orphaned*: the application's work goes
   on, and its result (or error) becomes a note for the next session, which the model
   answers unless the caller barged in since (the notes' rules); its outcome is logged once,
   as for any call. Every ``ok`` output is also kept in the conversation as text, so a later
   session knows what tools returned. Batches of the lost session never respond by
   themselves (their outputs went to it; the take-over's resume or the caller's next turn
   carries the conversation on), except an exit's: its response is over, so if it had
   spoken the exit waits for that audio to be heard, and if it had not (or its last words
   were lost before any audio came) the next session is asked for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from bridge.core.actions import Action, EndCall, LocalAction, SendUpstream, ToApp
from bridge.core.app_work import CancelTool, EmitEvent, RunExit, RunTool
from bridge.core.call_events import ToolCalled
from bridge.core.conversation import Conversation
from bridge.core.ending import CallEnd, EndReason
from bridge.core.realtime import FunctionCallDone
from bridge.core.realtime_client import FunctionCallOutput, ResponseCreate, SystemMessage
from bridge.core.records import (
    CallExitReport,
    ToolCallReport,
    ToolCancelledReport,
    ToolFillerReport,
    ToolResponseReport,
    ToolResultReport,
    report,
)
from bridge.core.state import ConversationState, Floor
from bridge.core.stats import CallCounters
from bridge.core.toolspec import ToolCatalog, ToolSpec

MAX_RUNNING: Final = 16
"""Calls of one call running at once; more are answered with an error at once (so the
application link's channel, of this capacity, can never be full)."""
MAX_OUTPUT_CHARS: Final = 32_768
MAX_TEXT_RESULT_CHARS: Final = 4000
"""A result given as text (a note, the conversation kept for a new session) is cut here:
the replay carries at most :data:`bridge.core.conversation.MAX_REPLAY_CHARS` in all."""
DEFAULT_LEAD_S: Final = 0.3
"""The upstream's first-audio latency assumed before this call has measured it."""
LEAD_MARGIN_S: Final = 0.1
"""Added to the measured latency: our request's trip to the upstream (``response.created``
is where the measurement starts) and the audio's trip to the caller."""
FIRST_AUDIO_SAMPLES: Final = 4
POLL_S: Final = 0.05
"""While the AI is still audible at a filler deadline, look again this much later."""
HEARD_GRACE_S: Final = 2.0
LAST_WORDS_CAP_S: Final = 15.0
"""An exit waits at most this long for the last-words response to be done."""
MAX_BATCHES: Final = 64

FILLER_INSTRUCTIONS: Final = (
    "Tell the caller in a few words, in their language, that you are checking. Do not give "
    "any result and do not guess one: it is not back yet. One short sentence."
)
GOODBYE_INSTRUCTIONS: Final = (
    "Say a brief, friendly goodbye to the caller, in their language. The call ends after it."
)
TRANSFER_INSTRUCTIONS: Final = (
    "Tell the caller in one short sentence, in their language, that you are transferring them now."
)

Outcome = Literal[
    "ok",
    "timeout",
    "http_status",
    "invalid_json",
    "unreachable",
    "too_large",
    "bad_arguments",
    "unknown_tool",
    "cut_off",
    "busy",
    "cancelled",
]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What the application link got for a call: ``output`` (JSON text) when ``ok``."""

    outcome: Outcome
    output: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Moment:
    """What the ledger needs to know about playout, now (the conversation state it reads
    itself: it changes as the ledger requests responses)."""

    now: float
    ai_speaking: bool
    last_heard_at: float | None
    """When playout last confirmed audio as played (a mark echo): about when the caller last
    heard the AI."""
    unplayed_ms: int
    """AI audio queued locally or sent but not confirmed played."""


@dataclass(slots=True)
class Call:
    call_id: str
    name: str
    response_id: str
    epoch: int
    started_at: float
    spec: ToolSpec | None
    answered: bool = False
    cancelled: bool = False
    orphaned: bool = False
    """Its session was lost while it ran: no output is ever sent for it (module rule 6)."""


@dataclass(slots=True)
class Batch:
    response_id: str
    epoch: int
    call_ids: list[str] = field(default_factory=list)
    response_done: bool = False
    done_at: float | None = None
    audio_ms: int = 0
    """AI audio in the response that made the calls."""
    resolved: bool = False
    created_seq_at_done: int = 0
    """Responses created so far when the calling response was done (the filler is skipped
    if the AI spoke since)."""
    filler: Literal["none", "requested", "skipped"] = "none"
    filler_not_before: float = 0.0
    exit_call: str | None = None


@dataclass(slots=True)
class Exit:
    kind: Literal["end_call", "transfer_call"]
    call_id: str
    response_id: str
    epoch: int
    destination: str | None
    target_name: str | None
    phase: Literal["batch", "last_words", "heard", "working"] = "batch"
    words_tag: str | None = None
    words_response: str | None = None
    words_done: bool = False
    deadline: float | None = None


def _output(**fields: object) -> str:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def error_output(tool: str, outcome: Outcome, detail: str) -> str:
    """The output the model gets for a call that did not produce a result."""
    return _output(ok=False, tool=tool, error=outcome, detail=detail)


class ToolLedger:
    """Every function call of one call, and the decisions about them (module docstring)."""

    __slots__ = (
        "_batches",
        "_calls",
        "_conversation",
        "_counters",
        "_events",
        "_exit",
        "_first_audio_s",
        "_ids",
        "_note",
        "_responses_created",
        "_state",
        "caller_speaking",
        "catalog",
        "filler_s",
    )

    def __init__(
        self,
        catalog: ToolCatalog,
        *,
        state: ConversationState,
        counters: CallCounters,
        conversation: Conversation,
        ids: Callable[[str], str],
        note: Callable[[str, bool, int], list[Action]],
        filler_ms: int,
        events: bool,
    ) -> None:
        self.catalog = catalog
        self.filler_s = filler_ms / 1000.0
        """0: no filler."""
        self._state = state
        self._counters = counters
        self._conversation = conversation
        self._ids = ids
        self._note = note
        """``note(text, respond, epoch)``: the core's notes path (an orphaned call's result)."""
        self._events = events
        self._calls: dict[str, Call] = {}
        self._batches: dict[str, Batch] = {}
        self._exit: Exit | None = None
        self._responses_created = 0
        self._first_audio_s: list[float] = []
        self.caller_speaking = False
        """Between ``speech_started`` and ``speech_stopped``, whoever held the floor."""

    # -- views ----------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return sum(1 for c in self._calls.values() if not c.answered)

    @property
    def waits_for_playout(self) -> bool:
        """An exit waits for its last words to be heard (mark echoes matter)."""
        return self._exit is not None and self._exit.phase == "heard"

    @property
    def exit_kind(self) -> str | None:
        return self._exit.kind if self._exit is not None else None

    @property
    def lead_s(self) -> float:
        """How much earlier than the silence setting the filler is asked for."""
        measured = max(self._first_audio_s, default=DEFAULT_LEAD_S)
        return min(self.filler_s, measured + LEAD_MARGIN_S)

    @property
    def orphans_running(self) -> bool:
        """A call of a lost session is still running (its result will come as a note)."""
        return any(c.orphaned and not c.answered for c in self._calls.values())

    # -- helpers --------------------------------------------------------------------------

    def _send_output(
        self, call: Call, output: str, outcome: Outcome, m: Moment, detail: str
    ) -> list[Action]:
        call.answered = True
        if outcome != "ok":
            self._counters.tool_errors += 1
        if call.orphaned:
            detail = f"{detail}; its session was lost: no output sent".lstrip("; ")
        record = ToolResultReport(
            tool=call.name,
            call_id=call.call_id,
            outcome=outcome,
            latency_ms=round((m.now - call.started_at) * 1000.0, 3),
            detail=detail,
        )
        logged = report("INFO" if outcome == "ok" else "WARNING", record)
        if call.orphaned:
            return [logged]
        if outcome == "ok" and call.spec is not None and call.spec.kind == "url":
            self._conversation.note(
                f"The tool {call.name} returned: {output[:MAX_TEXT_RESULT_CHARS]}"
            )
        return [SendUpstream(FunctionCallOutput(self._ids("output"), call.call_id, output)), logged]

    def _request(
        self,
        purpose: str,
        answers: str,
        instructions: str | None,
        tool_choice: Literal["none"] | None,
    ) -> tuple[str, SendUpstream]:
        tag = self._ids(purpose)
        self._state.request(tag)
        return tag, SendUpstream(
            ResponseCreate(
                self._ids("response"),
                request_tag=tag,
                instructions=instructions,
                purpose=purpose,
                answers=answers,
                tool_choice=tool_choice,
            )
        )

    @property
    def _epoch(self) -> int:
        return self._state.barge_in_epoch

    def _can_speak(self) -> bool:
        return (
            self._state.may_create_response
            and self._state.floor is Floor.AI_MAY_SPEAK
            and not self.caller_speaking
        )

    def _batch(self, response_id: str, m: Moment) -> Batch:
        batch = self._batches.get(response_id)
        if batch is None:
            batch = self._batches[response_id] = Batch(response_id, self._epoch)
            while len(self._batches) > MAX_BATCHES:
                oldest = next(iter(self._batches))
                del self._batches[oldest]
        return batch

    # -- the model calls ------------------------------------------------------------------

    def on_function_call(self, ev: FunctionCallDone, m: Moment, *, cancelled: bool) -> list[Action]:
        """``response.output_item.done`` of a function call; ``cancelled``: its response was
        cancelled by a barge-in before this arrived."""
        if ev.call_id in self._calls:
            return []
        spec = self.catalog.get(ev.name)
        call = Call(ev.call_id, ev.name, ev.response_id, self._epoch, m.now, spec)
        self._calls[ev.call_id] = call
        self._counters.tool_calls += 1
        if cancelled or ev.status != "completed":
            # The model was cut off: the arguments may be partial, and the caller has moved on.
            return self._send_output(
                call,
                error_output(ev.name, "cut_off", "not run: the caller interrupted first"),
                "cut_off",
                m,
                "response cut off",
            )
        batch = self._batch(ev.response_id, m)
        batch.call_ids.append(ev.call_id)
        kind = spec.kind if spec is not None else "url"
        actions: list[Action] = [
            report("INFO", ToolCallReport(ev.name, ev.call_id, kind, ev.response_id, batch.epoch))
        ]
        try:
            arguments = json.loads(ev.arguments or "{}")
        except ValueError:
            arguments = None
        if self._events:
            shown = arguments if isinstance(arguments, dict) else {}
            event = ToolCalled(ev.name, ev.call_id, kind, shown, batch.epoch)
            actions.append(ToApp(EmitEvent(event)))
        if spec is None:
            known = ", ".join(t.name for t in self.catalog.tools) or "none"
            out = error_output(
                ev.name, "unknown_tool", f"no tool named {ev.name!r} (known: {known})"
            )
            return actions + self._send_output(call, out, "unknown_tool", m, "unknown tool")
        if not isinstance(arguments, dict):
            out = error_output(ev.name, "bad_arguments", "the arguments were not a JSON object")
            return actions + self._send_output(call, out, "bad_arguments", m, "not a JSON object")
        if spec.kind == "url":
            assert spec.url is not None
            if self.running > MAX_RUNNING:
                out = error_output(ev.name, "busy", "too many tool calls at once; try again")
                return actions + self._send_output(call, out, "busy", m, "too many running")
            work = RunTool(
                ev.call_id, ev.name, spec.url, spec.timeout_s, json.dumps(arguments), batch.epoch
            )
            return [*actions, ToApp(work)]
        return actions + self._start_exit(call, spec, arguments, batch, m)

    def _start_exit(
        self, call: Call, spec: ToolSpec, arguments: dict[str, object], batch: Batch, m: Moment
    ) -> list[Action]:
        if self._exit is not None:
            out = error_output(call.name, "busy", f"already doing {self._exit.kind}")
            return self._send_output(call, out, "busy", m, "an exit is already pending")
        destination: str | None = None
        target_name: str | None = None
        if spec.kind == "transfer_call":
            wanted = arguments.get("destination")
            target_name = wanted if isinstance(wanted, str) else None
            destination = spec.target(target_name) if target_name is not None else None
            if destination is None:
                known = ", ".join(name for name, _ in spec.targets)
                out = error_output(
                    call.name, "bad_arguments", f"unknown destination {wanted!r}; known: {known}"
                )
                return self._send_output(call, out, "bad_arguments", m, "unknown destination")
            detail = f"transferring to {target_name} once the caller has heard you"
        else:
            detail = "the call ends once the caller has heard you"
        kind: Literal["end_call", "transfer_call"] = (
            "end_call" if spec.kind == "end_call" else "transfer_call"
        )
        self._exit = Exit(
            kind, call.call_id, batch.response_id, batch.epoch, destination, target_name
        )
        batch.exit_call = call.call_id
        return self._send_output(call, _output(ok=True, detail=detail), "ok", m, "")

    # -- the application answers ----------------------------------------------------------

    def on_result(self, call_id: str, result: ToolResult, m: Moment) -> list[Action]:
        call = self._calls.get(call_id)
        if call is None:
            return []
        if call.cancelled:
            self._counters.tool_results_dropped += 1
            record = ToolCancelledReport(call.name, call_id, "barge_in", late_result=True)
            return [report("INFO", record)]
        if call.answered:
            return []
        outcome: Outcome = result.outcome
        output = result.output
        if outcome == "ok" and len(output) > MAX_OUTPUT_CHARS:
            outcome = "too_large"
            output = error_output(call.name, outcome, f"reply over {MAX_OUTPUT_CHARS} chars")
        elif outcome != "ok":
            output = error_output(call.name, outcome, result.detail)
        actions = self._send_output(call, output, outcome, m, result.detail)
        if call.orphaned:
            actions += self._orphan_note(call, output)
        batch = self._batches.get(call.response_id)
        if batch is not None:
            actions += self._advance(batch, m)
        return actions

    def _orphan_note(self, call: Call, output: str) -> list[Action]:
        """An orphaned call's result, as a note for the current (or next) session: the
        model answers it once the last orphaned call of its response is in."""
        last = not any(
            c.orphaned and not c.answered and c.response_id == call.response_id
            for c in self._calls.values()
        )
        text = (
            f"You called the tool {call.name} before a technical problem interrupted the "
            f"call; it has now returned: {output[:MAX_TEXT_RESULT_CHARS]}"
        )
        return self._note(text, last, call.epoch)

    # -- the conversation moves on --------------------------------------------------------

    def on_response_created(self, response_id: str, tag: str | None) -> None:
        self._responses_created += 1
        exit_ = self._exit
        if exit_ is not None and tag is not None and tag == exit_.words_tag:
            exit_.words_response = response_id

    def on_first_audio(self, latency_s: float) -> None:
        self._first_audio_s.append(latency_s)
        del self._first_audio_s[:-FIRST_AUDIO_SAMPLES]

    def on_response_done(self, response_id: str, audio_ms: int, m: Moment) -> list[Action]:
        batch = self._batches.get(response_id)
        if batch is not None and not batch.response_done:
            batch.response_done = True
            batch.done_at = m.now
            batch.audio_ms = audio_ms
            batch.created_seq_at_done = self._responses_created
        exit_ = self._exit
        if exit_ is not None and exit_.words_response == response_id:
            exit_.words_done = True
        return self.advance_all(m)

    def on_speech(self, *, started: bool) -> None:
        self.caller_speaking = started

    def on_caller_turn_end(self, m: Moment, server_responds: bool) -> list[Action]:
        """``speech_stopped``. With ``server_responds`` (``create_response``) the server now
        answers the caller itself, with every output already sent in its context: a batch
        whose outputs are all in is answered by that reply, not by another of ours."""
        self.caller_speaking = False
        actions: list[Action] = []
        if server_responds:
            for batch in self._batches.values():
                ready = batch.response_done and all(self._calls[c].answered for c in batch.call_ids)
                mine = self._exit is not None and self._exit.call_id == batch.exit_call
                if ready and not batch.resolved and not mine and batch.epoch == self._epoch:
                    actions += self._resolve(batch, "answered", m)
        return actions + self.advance_all(m)

    def advance_all(self, m: Moment) -> list[Action]:
        """Re-check every open batch and the exit (after anything that could unblock them)."""
        actions: list[Action] = []
        for batch in list(self._batches.values()):
            actions += self._advance(batch, m)
        actions += self._advance_exit(m)
        return actions

    def _advance(self, batch: Batch, m: Moment) -> list[Action]:
        if batch.resolved or not batch.response_done:
            return []
        calls = [self._calls[c] for c in batch.call_ids]
        if not all(c.answered for c in calls):
            return []
        exit_ = self._exit
        mine = exit_ is not None and exit_.call_id == batch.exit_call
        if batch.epoch != self._epoch:
            return [*self._resolve(batch, "silent", m)]
        if mine:
            assert exit_ is not None
            if batch.audio_ms > 0:
                # The calling response already spoke (its goodbye): wait for it to be heard.
                return [*self._await_heard(batch, exit_, m)]
            if not self._can_speak():
                return []
            instructions = (
                GOODBYE_INSTRUCTIONS if exit_.kind == "end_call" else TRANSFER_INSTRUCTIONS
            )
            purpose = "goodbye" if exit_.kind == "end_call" else "transfer"
            exit_.words_tag, request = self._request(
                purpose, batch.response_id, instructions, "none"
            )
            exit_.phase = "last_words"
            exit_.deadline = m.now + LAST_WORDS_CAP_S
            return [*self._resolve(batch, "last_words", m), request]
        if not self._can_speak():
            return []
        _, request = self._request("tools", batch.response_id, None, None)
        return [*self._resolve(batch, "respond", m), request]

    def _await_heard(self, batch: Batch, exit_: Exit, m: Moment) -> list[LocalAction]:
        exit_.phase = "heard"
        exit_.deadline = m.now + m.unplayed_ms / 1000.0 + HEARD_GRACE_S
        return self._resolve(batch, "heard", m) + self._advance_exit(m)

    def _resolve(self, batch: Batch, decision: str, m: Moment) -> list[LocalAction]:
        batch.resolved = True
        if decision == "silent":
            self._counters.tool_outputs_silent += 1
        record = ToolResponseReport(batch.response_id, tuple(batch.call_ids), decision, batch.epoch)
        return [report("INFO", record)]

    # -- barge-in -------------------------------------------------------------------------

    def on_barge_in(self, m: Moment) -> list[Action]:
        """A hard barge-in happened (the epoch is already the new one): cancel what must be,
        abort a pending exit."""
        actions: list[Action] = []
        for call in self._calls.values():
            if call.answered or call.spec is None or call.spec.kind != "url":
                continue
            if call.spec.on_barge_in != "cancel":
                continue
            call.cancelled = True
            self._counters.tool_calls_cancelled += 1
            assert call.spec.url is not None
            out = error_output(
                call.name, "cancelled", "the caller interrupted; the call was cancelled"
            )
            actions += self._send_output(call, out, "cancelled", m, "barge-in")
            actions.append(
                report("INFO", ToolCancelledReport(call.name, call.call_id, "barge_in", False))
            )
            actions.append(ToApp(CancelTool(call.call_id, call.name, call.spec.url, "barge_in")))
        exit_ = self._exit
        if exit_ is not None and exit_.phase != "working":
            self._exit = None
            what = "end the call" if exit_.kind == "end_call" else "transfer the call"
            note = (
                f"The caller interrupted before you could {what}: the call goes on. "
                "Listen to what they say now."
            )
            actions.append(SendUpstream(SystemMessage(self._ids("note"), note)))
            actions.append(
                report("INFO", CallExitReport(exit_.kind, exit_.call_id, "aborted", "barge-in"))
            )
        return actions + self.advance_all(m)

    # -- the session is lost ----------------------------------------------------------------

    def on_session_lost(
        self, m: Moment, cut_response: str | None, cut_audio_ms: int
    ) -> list[LocalAction]:
        """The upstream session is gone and the call heals with a new one (module rule 6).
        ``cut_response`` was streaming when it was lost, after ``cut_audio_ms`` of audio."""
        for call in self._calls.values():
            if not call.answered:
                call.orphaned = True
        exit_ = self._exit
        actions: list[LocalAction] = []
        if exit_ is not None and exit_.phase == "last_words":
            # Its last words were lost with the session: the exit's batch is open again, with
            # what the caller got of them (none: the next session is asked for them).
            spoke = exit_.words_response is not None and exit_.words_response == cut_response
            exit_.phase = "batch"
            exit_.words_tag = exit_.words_response = None
            exit_.deadline = None
            own = self._batches.get(exit_.response_id)
            if own is not None:
                own.resolved = False
                own.audio_ms = cut_audio_ms if spoke else 0
        for batch in self._batches.values():
            if batch.resolved:
                continue
            if not batch.response_done:
                batch.response_done = True
                batch.done_at = m.now
                batch.audio_ms = cut_audio_ms if batch.response_id == cut_response else 0
                batch.created_seq_at_done = self._responses_created
            if exit_ is None or exit_.call_id != batch.exit_call:
                actions += self._resolve(batch, "session_lost", m)
            elif batch.audio_ms > 0 and all(self._calls[c].answered for c in batch.call_ids):
                actions += self._await_heard(batch, exit_, m)
        return actions

    # -- exits ----------------------------------------------------------------------------

    def _advance_exit(self, m: Moment) -> list[LocalAction]:
        exit_ = self._exit
        if exit_ is None:
            return []
        if exit_.phase == "last_words" and (
            exit_.words_done or (exit_.deadline is not None and m.now >= exit_.deadline)
        ):
            exit_.phase = "heard"
            exit_.deadline = m.now + m.unplayed_ms / 1000.0 + HEARD_GRACE_S
        if exit_.phase != "heard":
            return []
        capped = exit_.deadline is not None and m.now >= exit_.deadline
        if m.ai_speaking and not capped:
            return []
        exit_.phase = "working"
        exit_.deadline = None
        detail = "marks did not confirm in time; going on" if m.ai_speaking else ""
        return [
            report("INFO", CallExitReport(exit_.kind, exit_.call_id, "heard", detail)),
            ToApp(RunExit(exit_.call_id, exit_.kind, exit_.destination)),
        ]

    def on_heard(self, m: Moment) -> list[LocalAction]:
        """Playout confirmed more audio as played (a mark echo): an exit may proceed."""
        exit_ = self._exit
        if exit_ is None or exit_.phase != "heard" or m.ai_speaking:
            return []
        exit_.phase = "working"
        exit_.deadline = None
        return [
            report("INFO", CallExitReport(exit_.kind, exit_.call_id, "heard", "")),
            ToApp(RunExit(exit_.call_id, exit_.kind, exit_.destination)),
        ]

    def on_exit_result(
        self, call_id: str, ok: bool, detail: str
    ) -> tuple[list[Action], str | None, int]:
        """The REST work of the exit is done. Returns (actions, the text of a note for the
        model when a transfer failed, the exit's epoch)."""
        exit_ = self._exit
        if exit_ is None or exit_.call_id != call_id:
            return [], None, 0
        self._exit = None
        step = "done" if ok else "failed"
        actions: list[Action] = [
            report("INFO" if ok else "WARNING", CallExitReport(exit_.kind, call_id, step, detail))
        ]
        if exit_.kind == "end_call":
            # Failed or not, the call ends: the goodbye was heard.
            actions.append(EndCall(CallEnd(EndReason.END_CALL, detail)))
            return actions, None, exit_.epoch
        if ok:
            actions.append(EndCall(CallEnd(EndReason.TRANSFERRED, f"to {exit_.target_name}")))
            return actions, None, exit_.epoch
        note = (
            f"The transfer to {exit_.target_name} did not work ({detail}). Tell the caller, "
            "and offer to help another way."
        )
        return actions, note, exit_.epoch

    def twilio_stopped(self) -> CallEnd | None:
        """Twilio ended the stream while an exit's REST request was running: the exit's end."""
        exit_ = self._exit
        if exit_ is None or exit_.phase != "working":
            return None
        if exit_.kind == "end_call":
            return CallEnd(EndReason.END_CALL, "Twilio stopped the stream after the hang-up")
        return CallEnd(EndReason.TRANSFERRED, f"to {exit_.target_name}")

    # -- time -----------------------------------------------------------------------------

    def _filler_at(self, batch: Batch, last_heard_at: float | None) -> float | None:
        if (
            batch.resolved
            or self.filler_s <= 0
            or not batch.response_done
            or batch.filler != "none"
            or batch.exit_call is not None
            or batch.epoch != self._epoch
            or all(self._calls[c].answered for c in batch.call_ids)
        ):
            return None
        assert batch.done_at is not None
        quiet_since = max(batch.done_at, last_heard_at or 0.0)
        at = quiet_since + self.filler_s - self.lead_s
        return max(at, batch.filler_not_before)

    def deadline(self, last_heard_at: float | None) -> float | None:
        """Trio time (s) of the next filler or exit cap, if any (``last_heard_at``:
        :attr:`Moment.last_heard_at`). Cheap: the core reads it after every event."""
        exit_ = self._exit
        soonest = None if exit_ is None else exit_.deadline
        for batch in self._batches.values():
            at = self._filler_at(batch, last_heard_at)
            if at is not None and (soonest is None or at < soonest):
                soonest = at
        return soonest

    def on_timer(self, m: Moment) -> list[Action]:
        actions: list[Action] = []
        for batch in list(self._batches.values()):
            at = self._filler_at(batch, m.last_heard_at)
            if at is None or m.now < at:
                continue
            if self._responses_created > batch.created_seq_at_done:
                batch.filler = "skipped"  # the AI has spoken since (it answered the caller)
                continue
            if m.ai_speaking or not self._can_speak():
                batch.filler_not_before = m.now + POLL_S
                continue
            batch.filler = "requested"
            self._counters.tool_fillers += 1
            assert batch.done_at is not None
            waited = m.now - max(batch.done_at, m.last_heard_at or 0.0)
            _, request = self._request("filler", batch.response_id, FILLER_INSTRUCTIONS, "none")
            record = ToolFillerReport(
                batch.response_id, round(waited * 1000.0, 1), round(self.lead_s * 1000.0, 1)
            )
            actions += [report("INFO", record), request]
            break  # one response at a time
        return actions + self._advance_exit(m)
