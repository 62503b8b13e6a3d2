"""The simulated Realtime upstream over real loopback sockets, with a tiny client written here."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
)

from bridge.audio.synth import speech_like_ulaw
from bridge.sim.upstream import SimUpstream, SimUpstreamOptions
from bridge.sim.upstream_faults import parse_fault_plan
from bridge.sim.upstream_session import UpstreamSession
from tests.wsclient import Event, connect, recv, recv_until, send

TIMEOUT_S = 30  # virtual seconds (autojump_clock); a hang fails instead of blocking the suite


async def start(nursery: trio.Nursery, **options: Any) -> SimUpstream:
    sim = SimUpstream(SimUpstreamOptions(**options))
    await nursery.start(sim.serve)
    return sim


PCMU_SESSION = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            },
            "output": {"format": {"type": "audio/pcmu"}},
        },
    },
}


async def test_response_over_socket_is_paced_and_recorded(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim = await start(nursery)
    with trio.fail_after(TIMEOUT_S):
        async with connect(sim.url) as ws:
            created = await recv(ws)
            assert created["session"]["audio"]["output"]["format"]["type"] == "audio/pcm"
            t0 = trio.current_time()
            await send(ws, {"type": "response.create", "response": {"instructions": "Greet"}})
            events = await recv_until(ws, "response.done")
            elapsed = trio.current_time() - t0
            session = await sim.wait_for_session(0)
            await ws.aclose(1000)
        await session.closed.wait()
    # 250 ms to the first delta, then 29 more every 100 ms / 4.0.
    assert elapsed == pytest.approx(0.975, abs=0.01)
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert sum(len(base64.b64decode(e["delta"])) for e in deltas) == 3000 * 48
    assert [e["type"] for _, e in session.received] == ["response.create"]
    assert [e for _, e in session.sent][: len(events) + 1] == [created, *events]
    times = [t for t, _ in session.sent]
    assert times == sorted(times)
    [record] = session.responses.values()
    assert record.done_at is not None
    assert record.done_at - record.created_at == pytest.approx(0.975, abs=0.01)
    assert session.close_code == 1000


async def test_beta_header_gets_error_then_close_4000(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim = await start(nursery)
    with trio.fail_after(TIMEOUT_S):
        async with connect(sim.url, [(b"OpenAI-Beta", b"realtime=v1")]) as ws:
            error = (await recv(ws))["error"]
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
    assert error["code"] == "beta_api_shape_disabled"
    assert error["message"] == (
        "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
    )
    assert closed.value.reason is not None
    assert closed.value.reason.code == 4000
    assert sim.sessions[0].close_code == 4000


async def test_api_key_is_checked_at_handshake(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim = await start(nursery, require_api_key="sk-test")
    with trio.fail_after(TIMEOUT_S):
        # The handshake runs inside connect()'s nursery, hence the group.
        with pytest.RaisesGroup(ConnectionRejected) as rejected:
            async with connect(sim.url, [(b"Authorization", b"Bearer no")]):
                pass
        good = [(b"Authorization", b"Bearer sk-test")]
        async with connect(sim.url, good) as ws:
            assert (await recv(ws))["type"] == "session.created"
    [error] = rejected.value.exceptions
    assert isinstance(error, ConnectionRejected)
    assert error.status_code == 401
    assert sim.rejected_handshakes == 1
    assert len(sim.sessions) == 1


async def test_reconnects_are_refused_after_a_slow_first_handshake(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim = await start(nursery, refuse_reconnects=2, handshake_delay_ms=200.0)
    with trio.fail_after(TIMEOUT_S):
        started = trio.current_time()
        async with connect(sim.url) as ws:
            assert (await recv(ws))["type"] == "session.created"
            assert trio.current_time() - started >= 0.2
        statuses = []
        for _ in range(2):
            with pytest.RaisesGroup(ConnectionRejected) as rejected:
                async with connect(sim.url):
                    pass
            [error] = rejected.value.exceptions
            assert isinstance(error, ConnectionRejected)
            statuses.append(error.status_code)
        async with connect(sim.url) as ws:
            assert (await recv(ws))["type"] == "session.created"
    assert statuses == [503, 503]
    assert len(sim.sessions) == 2


async def test_barge_in_over_socket_sends_late_deltas(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim = await start(nursery)
    with trio.fail_after(TIMEOUT_S):
        async with connect(sim.url) as ws:
            await recv(ws)
            await send(ws, PCMU_SESSION)
            await recv_until(ws, "session.updated")
            await send(ws, {"type": "response.create"})
            await recv_until(ws, "response.output_audio.delta")
            audio = speech_like_ulaw(1000, seed=5)
            for i in range(0, len(audio), 160):
                payload = base64.b64encode(audio[i : i + 160]).decode()
                await send(ws, {"type": "input_audio_buffer.append", "audio": payload})
            events = await recv_until(ws, "response.done")
    kinds = [e["type"] for e in events]
    after = kinds[kinds.index("input_audio_buffer.speech_started") :]
    assert after.count("response.output_audio.delta") == 2
    assert events[-1]["response"]["status_details"] == {
        "type": "cancelled",
        "reason": "turn_detected",
    }
    session = sim.sessions[0]
    [(t_started, audio_start_ms)] = session.speech_started
    assert audio_start_ms == 0
    [record] = session.responses.values()
    assert record.cancelled_at is not None
    assert record.cancelled_at <= t_started


async def test_planned_close_fault(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim = await start(nursery, faults=parse_fault_plan("close1011@3000"))
    with trio.fail_after(TIMEOUT_S):
        async with connect(sim.url) as ws:
            t0 = trio.current_time()
            await recv(ws)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            elapsed = trio.current_time() - t0
    assert closed.value.reason is not None
    assert (closed.value.reason.code, closed.value.reason.reason) == (1011, "Internal server error")
    assert elapsed == pytest.approx(3.0, abs=0.01)
    assert sim.sessions[0].close_code == 1011


async def test_runtime_frame_faults(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim = await start(nursery)
    with trio.fail_after(TIMEOUT_S):
        async with connect(sim.url) as ws:
            await recv(ws)
            session = await sim.wait_for_session(0)
            session.send_malformed()
            session.send_malformed(no_type=True)
            session.send_unknown_event()
            session.send_error("rate_limit_exceeded", "Slow down.")
            raw = await ws.get_message()
            no_type, unknown, error = await recv(ws), await recv(ws), await recv(ws)
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    assert "type" not in no_type
    assert unknown["type"] == "sim.unknown_event"
    assert error["error"]["code"] == "rate_limit_exceeded"
    assert error["error"]["message"] == "Slow down."


async def test_frames_of_any_content_are_sent_as_given(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    frames = ('{"type": "response.done", "response": 5}', "not json", '{"type": "x"}')
    sim = await start(nursery)
    with trio.fail_after(TIMEOUT_S):
        async with connect(sim.url) as ws:
            await recv(ws)
            session = await sim.wait_for_session(0)
            session.send_frames(frames)
            received = [await ws.get_message() for _ in frames]
    assert tuple(received) == frames
    assert tuple(session.frames_sent[1:]) == frames


async def test_stall_leaves_pings_unanswered_until_it_ends(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sim = await start(nursery)
    with trio.fail_after(TIMEOUT_S):
        async with connect(sim.url) as ws:
            await recv(ws)
            session = await sim.wait_for_session(0)
            session.stall(duration_ms=5000)
            await trio.testing.wait_all_tasks_blocked()
            stalled_at = trio.current_time()
            for _ in range(10):
                await send(ws, {"type": "input_audio_buffer.append", "audio": "/w=="})
            with trio.move_on_after(1.0) as no_pong:
                await ws.ping(b"1")
            await ws.ping(b"2")
            answered_after = trio.current_time() - stalled_at
    assert no_pong.cancelled_caught
    assert answered_after == pytest.approx(5.0, abs=0.01)
    assert len(session.received) == 10


async def test_a_failing_session_closes_1011_and_the_server_keeps_serving(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = UpstreamSession.handle

    def handle(self: UpstreamSession, event: Event, now: float) -> list[Event]:
        if event.get("type") == "boom":
            raise RuntimeError("injected bug")
        return original(self, event, now)

    monkeypatch.setattr(UpstreamSession, "handle", handle)
    sim = await start(nursery)
    with trio.fail_after(TIMEOUT_S):
        async with connect(sim.url) as ws:
            await recv(ws)
            await send(ws, {"type": "boom"})
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
        async with connect(sim.url) as ws:
            assert (await recv(ws))["type"] == "session.created"
    assert closed.value.reason is not None
    assert closed.value.reason.code == 1011
    assert sim.sessions[0].close_code == 1011
    assert sim.sessions[0].closed.is_set()
