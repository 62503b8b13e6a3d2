"""Fuzzing what the Realtime upstream can send: every server event type, with wrong types
and missing fields, in any order, into a live call (through the simulated upstream).

Each example is its own Trio run on a virtual clock (``MockClock``, autojump): the real
bridge, the simulated upstream and a simulated caller over loopback sockets. A call is
placed and, once its session is ready, the simulated upstream sends the fuzzed frames
(:meth:`bridge.sim.upstream.SimSession.send_frames`). Properties:

* no bug: nothing is logged at ERROR (no ``CALL_ERROR`` traceback) and the call does not
  end as ``internal_error``; it goes on, or ends for a stated reason (a session format
  changed, a fatal error code) with Twilio's stream closed with 1000 or 1011;
* the next call on the same bridge is a normal call: the greeting heard, ``twilio_stop``.

``make test`` runs a quick size, ``make fuzz`` the full one (``BRIDGE_FUZZ=full``).
"""

from __future__ import annotations

import json
from typing import Any

import trio
from hypothesis import event, given
from hypothesis import strategies as st
from loguru import logger
from trio.testing import MockClock

from bridge.core.ending import EndReason
from bridge.sim.upstream import SimSession
from tests.harness import start_rig
from tests.surface import fuzz_settings

LIVE_RESPONSE = "$response"
LIVE_ITEM = "$item"
"""Placeholders for the ids of the call's own response and item, filled in when sent, so
that fuzzed events also reach the state they would touch."""
AUDIO = "////////"  # base64 of 6 bytes of μ-law silence

TEMPLATES: list[dict[str, Any]] = [
    {"type": "session.created", "session": {"id": "sess_1", "object": "realtime.session"}},
    {
        "type": "session.updated",
        "session": {
            "audio": {
                "input": {"format": {"type": "audio/pcmu"}},
                "output": {"format": {"type": "audio/pcmu"}},
            }
        },
    },
    {"type": "input_audio_buffer.speech_started", "audio_start_ms": 100, "item_id": LIVE_ITEM},
    {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 900, "item_id": LIVE_ITEM},
    {"type": "response.created", "response": {"id": LIVE_RESPONSE, "metadata": {"a": "b"}}},
    {
        "type": "response.done",
        "response": {
            "id": LIVE_RESPONSE,
            "status": "cancelled",
            "status_details": {"reason": "turn_detected"},
        },
    },
    {
        "type": "response.output_item.added",
        "response_id": LIVE_RESPONSE,
        "item": {"id": LIVE_ITEM, "type": "message", "role": "assistant"},
    },
    {
        "type": "response.output_audio.delta",
        "response_id": LIVE_RESPONSE,
        "item_id": LIVE_ITEM,
        "content_index": 0,
        "delta": AUDIO,
    },
    {"type": "response.output_audio.done", "response_id": LIVE_RESPONSE, "item_id": LIVE_ITEM},
    {
        "type": "response.output_audio_transcript.delta",
        "response_id": LIVE_RESPONSE,
        "item_id": LIVE_ITEM,
        "delta": "Hel",
    },
    {
        "type": "response.output_audio_transcript.done",
        "response_id": LIVE_RESPONSE,
        "item_id": LIVE_ITEM,
        "transcript": "Hello",
    },
    {"type": "conversation.item.truncated", "item_id": LIVE_ITEM, "audio_end_ms": 500},
    {"type": "conversation.item.deleted", "item_id": LIVE_ITEM},
    {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": LIVE_ITEM,
        "transcript": "no",
    },
    {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": "response_cancel_not_active",
            "message": "no active response",
            "param": None,
            "event_id": "bridge_cancel_1",
        },
    },
    {"type": "rate_limits.updated", "rate_limits": []},
    {"type": "conversation.item.added", "item": {"id": LIVE_ITEM}},
    {"type": "sim.no_such_event"},
]

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "audio/pcm", "invalid_api_key", "session_expired"]),
    st.integers(100, 2000).map(lambda n: "x" * n),  # (hypothesis reprs every example)
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _mutate(value: Any) -> st.SearchStrategy[Any]:
    """The value, another of any type, or (objects) some fields dropped or mutated."""
    if isinstance(value, dict):
        fields = {
            k: st.one_of(st.just(v), _mutate(v), junk) for k, v in value.items() if k != "type"
        }
        if "type" in value:  # the type stays: the event must reach its parser
            return st.fixed_dictionaries({"type": st.just(value["type"])}, optional=fields)
        return st.fixed_dictionaries({}, optional=fields)
    return st.one_of(st.just(value), junk)


DROP = "$drop"


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every field of an event, nested ones included (not its ``type``)."""
    if not isinstance(value, dict):
        return []
    found = []
    for key, inner in value.items():
        if prefix or key != "type":
            found.append((*prefix, key))
            found += _paths(inner, (*prefix, key))
    return found


def _changed(value: Any, path: tuple[str, ...], new: Any) -> Any:
    """``value`` with the field at ``path`` set to ``new`` (or dropped: :data:`DROP`)."""
    if not path or not isinstance(value, dict):
        return value
    copy = dict(value)
    head, *rest = path
    if rest:
        copy[head] = _changed(copy.get(head), tuple(rest), new)
    elif new == DROP:
        copy.pop(head, None)
    else:
        copy[head] = new
    return copy


def _with_changes(template: dict[str, Any], chosen: list[tuple[tuple[str, ...], Any]]) -> Any:
    """``template`` with each ``(path, new)`` of ``chosen`` applied in turn."""
    event: Any = template
    for path, new in chosen:
        event = _changed(event, path, new)
    return event


def _wrong_fields(template: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The event with one or two fields missing or of another type: each wrong field on
    its own reaches the parser's checks, and the rest of the event its handler."""
    changes = st.lists(
        st.tuples(st.sampled_from(_paths(template)), junk | st.just(DROP)), min_size=1, max_size=2
    )

    return changes.map(lambda chosen: _with_changes(template, chosen))


def _leaf(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _same_type(value: Any) -> st.SearchStrategy[Any]:
    """Another value of the same JSON type: the event still parses, with odd contents."""
    if isinstance(value, bool) or value is None:
        return st.just(value)
    if isinstance(value, int):
        return st.integers(-(2**63), 2**63 - 1) | st.integers(-5, 5)
    if isinstance(value, str):
        return st.text(max_size=30) | st.sampled_from(["", "resp_other", "item_other", "x" * 500])
    return st.just(value)


def _odd_values(template: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The event with one or two fields given odd values of the right type (unknown ids,
    negative or huge numbers, empty text): what passes the parser reaches the call."""
    changes = st.lists(
        st.sampled_from(_leaves(template)).flatmap(
            lambda path: st.tuples(st.just(path), _same_type(_leaf(template, path)))
        ),
        min_size=1,
        max_size=2,
    )

    return changes.map(lambda chosen: _with_changes(template, chosen))


def _leaves(template: dict[str, Any]) -> list[tuple[str, ...]]:
    return [p for p in _paths(template) if not isinstance(_leaf(template, p), dict | list)]


WITH_FIELDS = [template for template in TEMPLATES if _paths(template)]
WITH_LEAVES = [template for template in TEMPLATES if _leaves(template)]
frames = st.lists(
    st.one_of(
        st.sampled_from(TEMPLATES).map(json.dumps),
        st.sampled_from(WITH_FIELDS).flatmap(_wrong_fields).map(json.dumps),
        st.sampled_from(WITH_LEAVES).flatmap(_odd_values).map(json.dumps),
        st.sampled_from(WITH_LEAVES).flatmap(_odd_values).map(json.dumps),
        st.sampled_from(TEMPLATES).flatmap(_mutate).map(json.dumps),
        st.text(max_size=40),
        junk.map(json.dumps),
    ),
    min_size=1,
    max_size=25,
)

FINE_ENDINGS = frozenset(
    {
        EndReason.TWILIO_STOP,
        EndReason.SESSION_FORMAT_CHANGED,
        EndReason.UPSTREAM_FATAL_ERROR,
    }
)
"""How the fuzzed call may end: the caller's hang-up, or a stated reason the events gave."""


def _fill_ids(frame: str, session: SimSession) -> str:
    response = next(reversed(session.responses), "resp_none")
    item = next(
        (item.id for item in reversed(session.conversation) if item.role == "assistant"),
        "item_none",
    )
    return frame.replace(LIVE_RESPONSE, response).replace(LIVE_ITEM, item)


async def _scenario(fuzzed: list[str]) -> None:
    errors: list[str] = []
    sink = logger.add(lambda m: errors.append(m.record["message"]), level="ERROR")
    try:
        with trio.fail_after(120):  # virtual seconds: a call that never ends fails here
            async with trio.open_nursery() as nursery:
                await _fuzzed_call_then_a_normal_one(nursery, fuzzed)
                nursery.cancel_scope.cancel()
    finally:
        logger.remove(sink)
    assert errors == []


async def _fuzzed_call_then_a_normal_one(nursery: trio.Nursery, fuzzed: list[str]) -> None:
    rig = await start_rig(nursery)
    caller = rig.caller("listen:60")
    async with trio.open_nursery() as calls:
        calls.start_soon(caller.run)
        await caller.wait_ai_turn_started(1)
        session = rig.sim.sessions[0]
        session.send_frames(tuple(_fill_ids(frame, session) for frame in fuzzed))
        await trio.sleep(1.0)  # the call lives on with what it was sent, then hangs up
        caller.hangup()
    handle = await rig.server.registry.wait_for_call(caller.options.call_sid)
    await handle.ended.wait()
    close = await caller.wait_closed()
    assert handle.end is not None
    event(f"call ended: {handle.end.reason.value}")
    assert handle.end.reason in FINE_ENDINGS, handle.end
    assert close.code in (1000, 1011)
    normal = await rig.complete_call("listen:2")
    assert normal.handle.end is not None
    assert normal.handle.end.reason is EndReason.TWILIO_STOP
    assert normal.report.ai_turns  # the greeting
    assert normal.report.violations == {}


@given(fuzzed=frames)
@fuzz_settings(quick=10, full=400)
def test_fuzz_upstream_events_never_break_a_call(fuzzed: list[str]) -> None:
    trio.run(_scenario, fuzzed, clock=MockClock(autojump_threshold=0))
