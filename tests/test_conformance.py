"""Both Realtime peers against the vendor's own types (:mod:`tests.conformance`).

Client side: real calls over loopback make the bridge send every client event it has, and each
frame the simulated upstream received is checked. Server side: every frame the simulated
upstream sent in those calls, in a direct session that makes it send every event type it has
(errors and text responses included, which the bridge never asks for), and under every fault.
"""

from __future__ import annotations

import base64
import json
import typing
from collections.abc import Iterable
from typing import Any, Literal

import pydantic
import pytest
import trio
from openai._models import BaseModel as SdkModel
from openai.types.realtime import SessionCreatedEvent
from trio.testing import MockClock
from trio_websocket import ConnectionClosed, WebSocketConnection

from bridge.audio import mulaw
from bridge.audio.synth import speech_like_ulaw
from bridge.core.actions import SendUpstream
from bridge.core.ending import CallEnd, EndReason
from bridge.core.realtime_client import ClientEvent, ReplayMessage, encode
from bridge.core.twilio import Media
from bridge.sim.script import AfterAiStarts, At, CallerScript, Utterance
from bridge.sim.upstream import SimSession, SimUpstream, SimUpstreamOptions
from bridge.sim.upstream_faults import Fault, FaultKind
from bridge.sim.upstream_session import SessionSettings, UpstreamSession
from tests.conformance import (
    SERVED_SESSION_FIELDS,
    EventCatalog,
    assert_client_event_conforms,
    assert_client_frame_conforms,
    assert_server_event_conforms,
    assert_server_frame_conforms,
    parse_frame,
)
from tests.core_driver import CLIENT_CANCELS, Driver
from tests.harness import Rig, start_rig
from tests.wsclient import connect, recv, recv_until, send

Event = dict[str, Any]
TIMEOUT_S = 60  # virtual seconds (autojump_clock): a hang fails instead of blocking the suite

BRIDGE_CLIENT_EVENT_TYPES = frozenset(cls.TYPE for cls in typing.get_args(ClientEvent))
"""Every client event the bridge can send (``bridge/core/realtime_client.py``)."""
IN_AN_ORDINARY_CALL = BRIDGE_CLIENT_EVENT_TYPES - {"response.cancel"}
"""The server's VAD cancels interrupted responses itself (``interrupt_response``): the
bridge sends ``response.cancel`` only for a response requested before a barge-in that
appears after it, which the client-event test below produces in the core."""

SIM_SERVER_EVENT_TYPES = frozenset(
    {
        "session.created",
        "session.updated",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.truncated",
        "conversation.item.deleted",
        "conversation.item.retrieved",
        "rate_limits.updated",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_text.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
        "error",
    }
)
"""Every server event type the simulated upstream sends, faults aside (``bridge/sim``)."""

EXEMPT_FAULTS = frozenset({FaultKind.MALFORMED, FaultKind.NO_TYPE, FaultKind.UNKNOWN_EVENT})
"""Faults whose whole point is a frame that no model describes (not JSON, no ``type``, an unknown
``type``): the bridge must survive them, so they cannot conform. Every other fault must."""


def types_of(frames: Iterable[str | bytes]) -> set[str]:
    return {parse_frame(frame)["type"] for frame in frames}


def assert_session_conforms(session: SimSession) -> None:
    """Every frame of one sim session, both ways, against the SDK."""
    for frame in session.frames_received:
        assert_client_frame_conforms(frame)
    for frame in session.frames_sent:
        assert_server_frame_conforms(frame)


def conforms(frame: str) -> bool:
    try:
        assert_server_frame_conforms(frame)
    except AssertionError:
        return False
    return True


# ---- the checker itself ------------------------------------------------------------------


def sim_session_created() -> Event:
    [created] = UpstreamSession(SessionSettings()).open()
    return created


def with_change(event: Event, path: tuple[str | int, ...], value: Any) -> Event:
    """A deep copy of ``event`` with ``value`` set at ``path``."""
    changed: Event = json.loads(json.dumps(event))
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


TRUNCATE: Event = {
    "type": "conversation.item.truncate",
    "event_id": "e1",
    "item_id": "item_1",
    "content_index": 0,
    "audio_end_ms": 120,
}
ITEM_ADDED: Event = {
    "type": "conversation.item.added",
    "event_id": "e2",
    "previous_item_id": None,
    "item": {
        "id": "item_1",
        "type": "message",
        "object": "realtime.item",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_audio", "transcript": "Hello."}],
    },
}


@pytest.mark.parametrize(
    ("direction", "event", "path"),
    [
        ("client", TRUNCATE, ("unknown",)),
        ("server", ITEM_ADDED, ("item", "unknown")),
        # Inside a list element of one member of a union of models.
        ("server", ITEM_ADDED, ("item", "content", 0, "unknown")),
        ("server", sim_session_created(), ("session", "audio", "input", "format", "unknown")),
        ("server", sim_session_created(), ("session", "audio", "input", "turn_detection", "x")),
    ],
)
def test_a_field_the_sdk_does_not_define_fails_at_any_depth(
    direction: str, event: Event, path: tuple[str | int, ...]
) -> None:
    check = assert_client_event_conforms if direction == "client" else assert_server_event_conforms
    check(event)
    with pytest.raises(AssertionError, match="Extra inputs are not permitted"):
        check(with_change(event, path, 1))


def test_wrong_types_unknown_events_and_bad_frames_fail() -> None:
    with pytest.raises(AssertionError, match="Input should be 'output_text' or 'output_audio'"):
        assert_server_event_conforms(with_change(ITEM_ADDED, ("item", "content", 0, "type"), "x"))
    # Strict: no string for a number, as the service reads JSON.
    with pytest.raises(AssertionError, match="audio_end_ms"):
        assert_client_event_conforms({**TRUNCATE, "audio_end_ms": "120"})
    with pytest.raises(AssertionError, match="unknown to the SDK"):
        assert_client_event_conforms({**TRUNCATE, "type": "conversation.item.cut"})
    with pytest.raises(AssertionError, match="unknown to the SDK"):
        assert_server_event_conforms({"event_id": "e3"})
    # A client event is not a server event.
    with pytest.raises(AssertionError, match="unknown to the SDK"):
        assert_server_event_conforms(TRUNCATE)
    with pytest.raises(AssertionError, match="duplicate keys"):
        assert_client_frame_conforms('{"type":"response.cancel","type":"response.cancel"}')
    with pytest.raises(AssertionError, match="binary frame"):
        assert_client_frame_conforms(b'{"type":"response.cancel"}')
    with pytest.raises(AssertionError, match="not a JSON object"):
        assert_client_frame_conforms('["response.cancel"]')
    with pytest.raises(AssertionError, match="not JSON"):
        assert_client_frame_conforms('{"type": "response.cancel"')
    with pytest.raises(AssertionError, match="not JSON, Out of range float"):
        assert_client_event_conforms({**TRUNCATE, "audio_end_ms": float("nan")})
    assert_client_frame_conforms(json.dumps(TRUNCATE))


class _AliasedEvent(SdkModel):
    """An SDK-style model whose Python name differs from its wire name, as ``schema_`` does."""

    type: Literal["test.aliased"]
    schema_: str | None = pydantic.Field(alias="schema", default=None)


def test_fields_are_read_by_their_wire_names() -> None:
    catalog = EventCatalog("test", _AliasedEvent)
    catalog.assert_conforms({"type": "test.aliased", "schema": "x"})
    with pytest.raises(AssertionError, match="schema_"):
        catalog.assert_conforms({"type": "test.aliased", "schema_": "x"})


def test_the_sdk_session_events_still_lack_exactly_the_served_session_fields() -> None:
    # If this fails, the SDK caught up: drop SERVED_SESSION_EVENTS from tests/conformance.py.
    created = sim_session_created()
    with pytest.raises(pydantic.ValidationError) as raw_sdk:
        SessionCreatedEvent.model_validate_json(json.dumps(created), strict=True, extra="forbid")
    member = ("session", "RealtimeSessionCreateRequest")
    realtime_member = [e for e in raw_sdk.value.errors() if e["loc"][:2] == member]
    assert {e["type"] for e in realtime_member} == {"extra_forbidden"}
    assert {e["loc"][2] for e in realtime_member} == SERVED_SESSION_FIELDS
    # Accepted here with them, typed as the SDK's created session types them, and not without.
    assert_server_event_conforms(created)
    with pytest.raises(AssertionError, match=r"session\.RealtimeSessionCreateRequest\.id\n"):
        assert_server_event_conforms({**created, "session": {**created["session"], "id": None}})
    with pytest.raises(AssertionError, match=r"realtime\.session"):
        assert_server_event_conforms(with_change(created, ("session", "object"), "session"))


# ---- client side: what the bridge sends, over real calls ---------------------------------


async def call_with_note(rig: Rig) -> SimSession:
    """Greeting cut in mid-generation (cancel, truncate the heard item, delete the unheard
    one), the answer, then a note with ``respond`` (item create and its response.create)."""
    script = CallerScript(
        utterances=(Utterance(900, 6, AfterAiStarts(turn=1, delay_ms=600)),), hangup=At(60_000)
    )
    caller = rig.caller(script)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller.run)
        handle = await rig.server.registry.wait_for_call(caller.options.call_sid)
        session = await rig.sim.wait_for_session(0)
        await caller.wait_ai_turn_ended(2)
        session.next_reply_ms(500)
        assert await handle.send_note("Tell the caller about opening hours.", respond=True)
        await caller.wait_ai_turn_ended(3)
        caller.hangup()
    await handle.ended.wait()
    await session.closed.wait()
    return session


async def test_every_client_event_of_a_call_conforms(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    # Two items per response, generated at 4x: when the caller cuts in, the first item is
    # partly heard and the second received but not heard at all.
    options = SimUpstreamOptions(items_per_response=2, reply_ms=2000)
    with trio.fail_after(TIMEOUT_S):
        rig = await start_rig(nursery, sim_options=options)
        session = await call_with_note(rig)
    assert_session_conforms(session)
    received = [parse_frame(frame) for frame in session.frames_received]
    assert {e["type"] for e in received} == IN_AN_ORDINARY_CALL
    [update] = [e for e in received if e["type"] == "session.update"]
    assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    greeting, note_reply = [e["response"] for e in received if e["type"] == "response.create"]
    assert greeting.keys() == {"instructions", "metadata"}
    assert note_reply.keys() == {"metadata"}
    # The server side of the same call: VAD, transcription, responses, truncate and delete.
    # Errors, text responses, clear and retrieve are the direct session's, further down.
    sent = [parse_frame(frame) for frame in session.frames_sent]
    assert {e["type"] for e in sent} >= SIM_SERVER_EVENT_TYPES - {
        "error",
        "input_audio_buffer.cleared",
        "conversation.item.retrieved",
        "response.output_text.delta",
        "response.output_text.done",
    }
    statuses = {e["response"]["status"] for e in sent if e["type"] == "response.done"}
    assert statuses == {"completed", "cancelled"}


def test_every_client_event_type_the_core_makes_conforms() -> None:
    """Each type of the ClientEvent union, made by the core on a real path and encoded at the
    edge as the upstream adapter does; the set must be the whole union."""
    driver = Driver.ready(greeting="Say hello.", session=CLIENT_CANCELS)
    silence = [Media(b"\xff" * 160, 20 * k) for k in range(10)]  # past the gate's hold
    driver.record(driver.core.on_caller_frames(silence, driver.now))
    driver.response_created("resp_1")
    driver.item_added("resp_1", "item_1")
    driver.audio("resp_1", "item_1", 300)
    driver.item_added("resp_1", "item_2")
    driver.play(100)
    driver.record(
        driver.core.submit_note(
            "The caller is a member.", respond=True, awaits_confirmation=False, epoch=None
        )
    )
    driver.speech_started()  # cancel, truncate item_1, delete item_2
    events = [a.event for a in driver.actions if isinstance(a, SendUpstream)]
    events += [e for plan in driver.barge_ins() for e in plan.upstream]
    for event in events:
        assert_client_frame_conforms(encode(event))
    assert {e.TYPE for e in events} == BRIDGE_CLIENT_EVENT_TYPES


def test_the_replay_after_a_lost_session_and_its_corrections_conform() -> None:
    """A new session is given the conversation as items with ids of the bridge's own; a
    replayed reply cut later is deleted and inserted again after its predecessor."""
    driver = Driver.ready()
    driver.speech_stopped()
    driver.event(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "item_user",
            "content_index": 0,
            "transcript": "Where is my order?",
        }
    )
    driver.response_created("resp_1")
    driver.item_added("resp_1", "item_1")
    driver.event(
        {
            "type": "response.output_audio_transcript.delta",
            "response_id": "resp_1",
            "item_id": "item_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "It left the warehouse this morning and arrives on Friday.",
        }
    )
    driver.audio("resp_1", "item_1", 3000)
    driver.audio_done("resp_1", "item_1")
    driver.play(200)
    start = len(driver.actions)
    driver.record(driver.core.on_upstream_lost(driver.now, CallEnd(EndReason.OPENAI_CLOSED)))
    driver.open_session()
    driver.play(1000)
    driver.speech_started()
    events = [a.event for a in driver.actions[start:] if isinstance(a, SendUpstream)]
    events += [e for plan in driver.barge_ins() for e in plan.upstream]
    replays = [e for e in events if isinstance(e, ReplayMessage)]
    assert len(replays) == 3  # the caller's words, the AI's, and the AI's cut again
    assert replays[-1].previous_item_id == replays[0].item_id
    for event in events:
        assert_client_frame_conforms(encode(event))


async def test_pcm16_session_update_and_appends_conform(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    script = CallerScript(utterances=(Utterance(600, 3, At(ms=400)),), hangup=At(ms=1500))
    with trio.fail_after(TIMEOUT_S):
        rig = await start_rig(nursery, openai_audio_format="pcm16")
        completed = await rig.complete_call(script)
        await completed.session.closed.wait()
    session = completed.session
    assert_session_conforms(session)
    received = [parse_frame(frame) for frame in session.frames_received]
    [update] = [e for e in received if e["type"] == "session.update"]
    pcm = {"type": "audio/pcm", "rate": 24000}
    assert update["session"]["audio"]["input"]["format"] == pcm
    assert update["session"]["audio"]["output"]["format"] == pcm
    appended = [base64.b64decode(e["audio"]) for e in received if e["type"].endswith(".append")]
    assert sum(map(len, appended)) >= 1000 * 48  # a second of 24 kHz PCM16 reached the model


# ---- server side: everything the simulated upstream sends --------------------------------


async def append(ws: WebSocketConnection, audio: bytes) -> None:
    """``audio`` in 20 ms μ-law appends, as the bridge sends it."""
    for i in range(0, len(audio), 160):
        payload = base64.b64encode(audio[i : i + 160]).decode()
        await send(ws, {"type": "input_audio_buffer.append", "audio": payload})


async def error_for(ws: WebSocketConnection, event: Event | str) -> Event:
    """Send ``event`` (a raw frame if ``str``) and return the ``error`` it is answered with."""
    if isinstance(event, str):
        await ws.send_message(event)
    else:
        await send(ws, event)
    error: Event = (await recv_until(ws, "error"))[-1]["error"]
    return error


async def drive_every_server_event(ws: WebSocketConnection) -> None:
    """One session that makes the sim send every event type it has, errors included."""
    await recv(ws)
    await send(
        ws,
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "transcription": {"model": "gpt-4o-mini-transcribe"},
                        "turn_detection": {"type": "server_vad", "create_response": False},
                    },
                    "output": {"format": {"type": "audio/pcmu"}},
                },
            },
        },
    )
    await recv_until(ws, "session.updated")
    beta_field = {"type": "realtime", "voice": "alloy"}
    errors = [
        await error_for(ws, {"type": "session.update", "session": beta_field}),
        await error_for(ws, {"type": "response.cancel", "event_id": "cancel_nothing"}),
        await error_for(ws, {**TRUNCATE, "item_id": "item_none"}),
        await error_for(ws, {"type": "input_audio_buffer.commit"}),
        await error_for(ws, {"type": "scooby.dooby.doo"}),
        await error_for(ws, {"event_id": "no_type"}),
        await error_for(ws, "not json"),
    ]
    assert errors[0]["code"] == "unknown_parameter"
    assert errors[1]["code"] == "response_cancel_not_active"
    assert errors[1]["event_id"] == "cancel_nothing"
    # A caller turn through the server VAD: started, stopped, committed, transcribed.
    await append(ws, speech_like_ulaw(1000, seed=5) + mulaw.silence(800))
    [committed] = [
        e
        for e in await recv_until(ws, "conversation.item.input_audio_transcription.completed")
        if e["type"] == "input_audio_buffer.committed"
    ]
    await append(ws, mulaw.silence(200))
    await send(ws, {"type": "input_audio_buffer.clear"})
    await recv_until(ws, "input_audio_buffer.cleared")
    # An audio response, a second one refused while it runs, then cancelled mid-way.
    await send(ws, {"type": "response.create"})
    opening = await recv_until(ws, "response.output_audio.delta")
    [item_id] = [e["item"]["id"] for e in opening if e["type"] == "response.output_item.added"]
    busy = await error_for(ws, {"type": "response.create"})
    assert busy["code"] == "conversation_already_has_active_response"
    await send(ws, {"type": "response.cancel"})
    cancelled = (await recv_until(ws, "response.done"))[-1]["response"]
    assert cancelled["status"] == "cancelled"
    too_long = await error_for(ws, {**TRUNCATE, "item_id": item_id, "audio_end_ms": 60_000})
    assert too_long["code"] == "invalid_value"
    await send(ws, {**TRUNCATE, "item_id": item_id, "audio_end_ms": 50})
    await recv_until(ws, "conversation.item.truncated")
    # A text response outside the conversation: output_text deltas and parts typed "text".
    text_only = {"output_modalities": ["text"], "conversation": "none"}
    await send(ws, {"type": "response.create", "response": text_only})
    text_events = await recv_until(ws, "response.done")
    parts = [e["part"]["type"] for e in text_events if e["type"].startswith("response.content_")]
    assert parts == ["text", "text"]
    # Items from the client, retrieved and deleted.
    for item in (
        {"type": "function_call_output", "call_id": "call_1", "output": '{"ok": true}'},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi."}]},
    ):
        await send(ws, {"type": "conversation.item.create", "item": item})
        await recv_until(ws, "conversation.item.done")
    for retrieved in (committed["item_id"], item_id):
        await send(ws, {"type": "conversation.item.retrieve", "item_id": retrieved})
        await recv_until(ws, "conversation.item.retrieved")
    await send(ws, {"type": "conversation.item.delete", "item_id": item_id})
    await recv_until(ws, "conversation.item.deleted")


async def test_every_server_event_of_the_sim_conforms(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    sim = SimUpstream(SimUpstreamOptions())
    await nursery.start(sim.serve)
    with trio.fail_after(TIMEOUT_S):
        async with connect(sim.url) as ws:
            await drive_every_server_event(ws)
        # A beta handshake gets the service's error, then the close.
        async with connect(sim.url, [(b"OpenAI-Beta", b"realtime=v1")]) as ws:
            assert (await recv(ws))["error"]["code"] == "beta_api_shape_disabled"
        for session in sim.sessions:
            await session.closed.wait()
    for session in sim.sessions:
        for frame in session.frames_sent:
            assert_server_frame_conforms(frame)
    assert types_of(f for s in sim.sessions for f in s.frames_sent) == SIM_SERVER_EVENT_TYPES
    # The content parts of an audio response are typed "audio", its item content "output_audio".
    sent = [parse_frame(frame) for frame in sim.sessions[0].frames_sent]
    parts = {e["part"]["type"] for e in sent if e["type"].startswith("response.content_part")}
    assert parts == {"audio", "text"}
    contents = {
        part["type"]
        for e in sent
        if e["type"] == "response.output_item.done"
        for part in e["item"]["content"]
    }
    assert contents == {"output_audio", "output_text"}


async def until_error_for(ws: WebSocketConnection, event_id: str) -> None:
    """Read frames, whatever they are, until the error answering client event ``event_id``."""
    while True:
        frame = await ws.get_message()
        try:
            message = json.loads(frame)
        except ValueError:
            continue
        if message.get("type") == "error" and message["error"]["event_id"] == event_id:
            return


@pytest.mark.parametrize("kind", list(FaultKind))
async def test_every_fault_conforms_unless_malformed_on_purpose(
    kind: FaultKind, autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    sim = SimUpstream(SimUpstreamOptions())
    await nursery.start(sim.serve)
    with trio.fail_after(TIMEOUT_S):
        async with connect(sim.url) as ws:
            await recv(ws)
            session = await sim.wait_for_session(0)
            session.command(Fault(kind, duration_ms=100))
            # Answered with an error once the fault is over, so the fault's frames come first.
            try:
                await send(ws, {"type": "response.cancel", "event_id": "probe"})
                await until_error_for(ws, "probe")
            except ConnectionClosed:
                assert kind is FaultKind.CLOSE
        await session.closed.wait()
    injected = session.frames_sent[1:]
    if kind is FaultKind.CLOSE:
        assert (injected, session.close_code) == ([], 1011)
    elif kind in EXEMPT_FAULTS:
        assert [conforms(frame) for frame in injected] == [False, True]
    else:
        assert injected
        assert all(conforms(frame) for frame in injected)
