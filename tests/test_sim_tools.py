"""The simulated upstream's scripted function calls, sans-IO, against the SDK's models."""

from __future__ import annotations

import json

import pytest

from bridge.sim.upstream_tools import SimToolCall
from tests.conformance import assert_server_event_conforms
from tests.test_sim_upstream import append, drain, noise, pcmu_session, speech, types


def caller_turn(**settings: object):  # type: ignore[no-untyped-def]
    s = pcmu_session(**settings)
    events = append(s, noise(500, -50) + speech(1500) + noise(1000, -50), 5.0)
    return s, events + [e for _, e in drain(s)]


def test_a_scripted_turn_says_its_line_then_calls_the_tools_in_parallel() -> None:
    s, events = caller_turn(
        tool_calls=(
            SimToolCall(1, "lookup_order", '{"order_id": "7"}', say_first_ms=600),
            SimToolCall(1, "book_table", "{}"),
        )
    )
    for event in events:
        assert_server_event_conforms(event)
    kinds = types(events)
    tail = kinds[kinds.index("response.output_audio.done") :]
    call = [
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
    ]
    assert tail[-13:] == [*call, *call, "response.done"]
    done = [e for e in events if e["type"] == "response.output_item.done"]
    calls = [e["item"] for e in done if e["item"]["type"] == "function_call"]
    assert [(c["name"], c["arguments"], c["status"]) for c in calls] == [
        ("lookup_order", '{"order_id": "7"}', "completed"),
        ("book_table", "{}", "completed"),
    ]
    [response] = [e["response"] for e in events if e["type"] == "response.done"]
    assert [o["type"] for o in response["output"]] == ["message", "function_call", "function_call"]
    spoken = next(iter(s.responses.values()))
    assert spoken.transcripts[spoken.items[0]].startswith("Let me look that up")


def test_the_reply_to_the_outputs_speaks_the_result_and_fillers_say_they_are_checking() -> None:
    s, events = caller_turn(tool_calls=(SimToolCall(1, "lookup_order", "{}"),))
    [call] = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    filler = s.handle(
        {
            "type": "response.create",
            "response": {
                "metadata": {"bridge_request": "t1", "bridge_purpose": "filler"},
                "instructions": "Say you are checking.",
                "tool_choice": "none",
            },
        },
        10.0,
    )
    drain(s)
    s.handle(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call_output",
                "call_id": call["call_id"],
                "output": '{"eta": "Thursday"}',
            },
        },
        20.0,
    )
    s.handle(
        {"type": "response.create", "response": {"metadata": {"bridge_purpose": "tools"}}}, 20.0
    )
    drain(s)
    filler_record, answer = list(s.responses.values())[1:]
    assert filler_record.transcripts[filler_record.items[0]].startswith("One moment")
    assert sum(filler_record.audio_ms.values()) == 1500  # short_reply_ms
    assert answer.transcripts[answer.items[0]].startswith(
        'Here is what I found: {"eta": "Thursday"}'
    )
    assert types(filler)[0] == "response.created"


def test_a_response_cut_before_its_calls_never_writes_them() -> None:
    s = pcmu_session(
        tool_calls=(SimToolCall(1, "lookup_order", "{}", say_first_ms=2000),), generation_speed=1.0
    )
    events = append(s, noise(500, -50) + speech(1500) + noise(700, -50), 5.0)
    events += [e for _, e in drain(s, 5.6)]
    events += s.handle({"type": "response.cancel"}, 5.6)
    events += [e for _, e in drain(s)]
    assert "response.function_call_arguments.done" not in types(events)
    [done] = [e["response"] for e in events if e["type"] == "response.done"]
    assert done["status"] == "cancelled"
    assert all(o["type"] == "message" for o in done["output"])


@pytest.mark.parametrize(
    "bad", [{"turn": 0, "name": "x"}, {"turn": 1, "name": "x", "say_first_ms": -1}]
)
def test_script_values_are_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="numbered from 1"):
        SimToolCall(**bad)  # type: ignore[arg-type]


def test_the_argument_delta_is_the_whole_arguments() -> None:
    _, events = caller_turn(tool_calls=(SimToolCall(1, "lookup_order", '{"a": 1}'),))
    [delta] = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert json.loads(delta["delta"]) == {"a": 1}
