"""Scripted function calls of the simulated Realtime upstream (sans-IO).

A :class:`SimToolCall` makes the reply to the caller's ``turn``-th utterance (1-based, the
response the server's VAD creates when that utterance ends) call a tool: first
``say_first_ms`` of speech (``"Let me look that up."``, or a goodbye before ``end_call``),
then the ``function_call`` item, as the service sends it::

    response.output_item.added        item {type: function_call, status: in_progress, arguments: ""}
    conversation.item.added
    response.function_call_arguments.delta
    response.function_call_arguments.done
    response.output_item.done         item {status: completed, call_id, name, arguments}
    conversation.item.done

then ``response.done``. Several entries for one turn are parallel calls in one response. A
response cancelled before its calls were written never writes them (as the service: a call
cut short mid-generation ends ``incomplete``; here it is simply not started).

The replies the bridge asks for say what they are for in ``metadata.bridge_purpose``: the
simulator answers a ``filler`` with "One moment, let me check that for you.", a ``goodbye``
with a goodbye, a ``transfer`` notice, and ``tools`` with the last tool output it was given
("Here is what I found: …").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bridge.sim.upstream_conversation import Conversation, ConversationItem, IdGen, JsonObj

PURPOSE_HEADS: Final = {
    "filler": "One moment, let me check that for you.",
    "goodbye": "Thank you for calling. Goodbye!",
    "transfer": "I am transferring you now, please hold.",
}
SAY_FIRST_HEADS: Final = {"end_call": "Thank you for calling, goodbye!"}
DEFAULT_SAY_FIRST: Final = "Let me look that up for you."
SHORT_PURPOSES: Final = frozenset(PURPOSE_HEADS)
"""Replies of these purposes are ``short_reply_ms`` long."""


@dataclass(frozen=True, slots=True)
class SimToolCall:
    """The reply to caller utterance ``turn`` calls ``name`` with ``arguments`` (JSON text)."""

    turn: int
    name: str
    arguments: str = "{}"
    say_first_ms: int = 0
    """Speech in the same response before the call (0: the call alone)."""

    def __post_init__(self) -> None:
        if self.turn < 1 or self.say_first_ms < 0:
            raise ValueError("turns are numbered from 1; say_first_ms >= 0")


@dataclass(frozen=True, slots=True)
class CallPlan:
    item_id: str
    call_id: str
    name: str
    arguments: str


def plan_calls(script: tuple[SimToolCall, ...], turn: int, ids: IdGen) -> list[CallPlan]:
    return [
        CallPlan(ids.new("item_"), ids.new("call_"), call.name, call.arguments)
        for call in script
        if call.turn == turn
    ]


def say_first(script: tuple[SimToolCall, ...], turn: int) -> tuple[int, str]:
    """(ms, head) of the speech before the calls of ``turn`` (0 ms: none)."""
    calls = [c for c in script if c.turn == turn]
    ms = max((c.say_first_ms for c in calls), default=0)
    head = next((SAY_FIRST_HEADS[c.name] for c in calls if c.name in SAY_FIRST_HEADS), None)
    return ms, head or DEFAULT_SAY_FIRST


def _item(plan: CallPlan, status: str, arguments: str) -> ConversationItem:
    return ConversationItem(
        id=plan.item_id,
        type="function_call",
        role=None,
        status=status,
        content_type="",
        client_item={
            "type": "function_call",
            "status": status,
            "call_id": plan.call_id,
            "name": plan.name,
            "arguments": arguments,
        },
    )


def call_events(
    plan: CallPlan,
    *,
    response_id: str,
    output_index: int,
    conversation: Conversation | None,
    ids: IdGen,
) -> tuple[list[JsonObj], JsonObj]:
    """The events of one function call item, and the item as ``response.done`` lists it."""

    def event(type_: str, **fields: object) -> JsonObj:
        return {"type": type_, "event_id": ids.new("event_"), **fields}

    opening = _item(plan, "in_progress", "")
    done = _item(plan, "completed", plan.arguments)
    where = {"response_id": response_id, "output_index": output_index}
    out = [event("response.output_item.added", **where, item=opening.to_json())]
    previous: str | None = None
    if conversation is not None:
        previous = conversation.append(done)
        out.append(
            event("conversation.item.added", previous_item_id=previous, item=opening.to_json())
        )
    ids_ = {**where, "item_id": plan.item_id, "call_id": plan.call_id}
    out.append(event("response.function_call_arguments.delta", **ids_, delta=plan.arguments))
    out.append(
        event(
            "response.function_call_arguments.done",
            **ids_,
            name=plan.name,
            arguments=plan.arguments,
        )
    )
    out.append(event("response.output_item.done", **where, item=done.to_json()))
    if conversation is not None:
        out.append(event("conversation.item.done", previous_item_id=previous, item=done.to_json()))
    return out, done.to_json()


def last_tool_output(conversation: Conversation) -> str | None:
    """The output of the latest ``function_call_output`` after the latest message, if any."""
    for item in reversed(conversation.live()):
        if item.type == "function_call_output":
            output = (item.client_item or {}).get("output")
            return str(output) if output is not None else ""
        if item.type == "message":
            return None
    return None


def answer_head(output: str) -> str:
    shown = output if len(output) <= 80 else output[:77] + "..."
    return f"Here is what I found: {shown}."
