"""Kernel receive times in the simulated caller and upstream, over real loopback TCP on the
real clock.

The stamps are the kernel's wall-clock times, so these tests cannot run on
``autojump_clock``; a stalled event loop is made with a blocking ``time.sleep`` (the lag
the stamps exist to take out), not to wait for anything.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import AsyncIterator

import pytest
import trio
from websockets.frames import Frame, Opcode

from bridge.runtime.http import HttpLimits, HttpRequest, HttpResponse, serve_http
from bridge.runtime.upstream import connect_upstream
from bridge.runtime.websocket import WebSocket
from bridge.sim.arrival import ArrivalStampedStream, kernel_stamping
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.script import At, CallerScript
from bridge.sim.upstream import SimUpstream, SimUpstreamOptions

STALL_S = 0.03
"""How long the test blocks its own event loop after the peer's write."""
SLACK_S = 0.002
"""Room for the step between a clock read and the kernel's stamp of the same write."""


@pytest.fixture(autouse=True)
async def stamping() -> AsyncIterator[None]:
    """Stamping on before the first connection (Linux starts it a moment after asked)."""
    async with kernel_stamping() as working:
        assert working, "this kernel does not stamp received packets"
        yield


async def _tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """(client, server) ends of one loopback TCP connection."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        port = listener.socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
    return client, server


async def test_a_late_read_is_stamped_when_the_bytes_arrived() -> None:
    with trio.fail_after(5):
        client, server = await _tcp_pair()
        async with client, server:
            stamped = ArrivalStampedStream(client)
            now = time.monotonic()
            assert stamped.arrival(now) == now  # nothing read yet: the read time itself
            before = time.monotonic()
            await server.send_all(b"media")
            after = time.monotonic()
            time.sleep(STALL_S)  # noqa: ASYNC251 -- the stall is the point: a blocked loop
            assert await stamped.receive_some() == b"media"
            await stamped.send_all(b"echo")
            assert await server.receive_some() == b"echo"
            read_at = time.monotonic()
            arrived = stamped.arrival(read_at)
    assert before - SLACK_S <= arrived <= after + SLACK_S
    assert read_at - arrived >= STALL_S


async def test_closed_and_reset_sockets_raise_trio_stream_errors() -> None:
    with trio.fail_after(5):
        client, server = await _tcp_pair()
        stamped = ArrivalStampedStream(client)
        # An abortive close: the peer's RST breaks the stream.
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await server.aclose()
        with pytest.raises(trio.BrokenResourceError):
            await stamped.receive_some()
        with pytest.raises(trio.BrokenResourceError):
            await stamped.send_all(b"x")  # the reset was read: EPIPE at once
        await stamped.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await stamped.receive_some()
        with pytest.raises(trio.ClosedResourceError):
            await stamped.send_all(b"x")
        with pytest.raises(ValueError, match="max_bytes"):
            await stamped.receive_some(0)


def _write_then_stall(fd: int, data: bytes) -> tuple[float, float]:
    """Write ``data`` to ``fd`` and block this thread for :data:`STALL_S`, without yielding
    to Trio in between (so no task of this loop reads it before the stall); returns the
    clock just before and just after the write."""
    before = time.monotonic()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    after = time.monotonic()
    time.sleep(STALL_S)
    return before, after


def _text_frame(message: dict[str, object], *, mask: bool) -> bytes:
    return Frame(Opcode.TEXT, json.dumps(message).encode()).serialize(mask=mask, extensions=[])


class _FakeBridge:
    """Answers a call's ``start`` with one ``media`` frame and a mark, written straight to
    the socket in one write; stalls the loop; hangs up once the mark is echoed (nothing else
    may reach the caller before it has read the media: a read is stamped by its newest
    bytes)."""

    def __init__(self) -> None:
        self.written: list[tuple[float, float]] = []

    async def http(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(404, b"")

    async def refuse_websocket(self, request: HttpRequest) -> HttpResponse | None:
        return None

    async def websocket(self, request: HttpRequest, ws: WebSocket) -> None:
        events = [json.loads(m) async for m in _messages(ws, until="start")]
        sid = events[-1]["streamSid"]
        media = {"event": "media", "streamSid": sid, "media": {"payload": "//8="}}
        mark = {"event": "mark", "streamSid": sid, "mark": {"name": "g0:m1:item_A"}}
        stream = ws.stream
        assert isinstance(stream, trio.SocketStream)
        frames = _text_frame(media, mask=False) + _text_frame(mark, mask=False)
        self.written.append(_write_then_stall(stream.socket.fileno(), frames))
        async for _ in _messages(ws, until="mark"):
            pass
        await ws.aclose()


async def _messages(ws: WebSocket, *, until: str) -> AsyncIterator[str]:
    """The peer's messages up to and including the first whose ``event`` is ``until``."""
    while (message := await ws.receive()) is not None:
        yield message
        if json.loads(message)["event"] == until:
            return
    raise AssertionError(f"closed before {until!r}")


@pytest.mark.parametrize("stamp_arrivals", [True, False])
async def test_the_caller_times_bridge_media_by_arrival_when_asked(
    nursery: trio.Nursery, stamp_arrivals: bool
) -> None:
    bridge = _FakeBridge()
    _, port = await nursery.start(serve_http, bridge, "127.0.0.1", 0, HttpLimits())
    caller = SimCaller(
        CallerOptions(
            url=f"ws://127.0.0.1:{port}/media",
            script=CallerScript(hangup=At(ms=60_000)),
            clock=time.monotonic,
            stamp_arrivals=stamp_arrivals,
        )
    )
    with trio.fail_after(5):
        async with trio.open_nursery() as inner:
            inner.start_soon(caller.run)
            turn = await caller.wait_ai_turn_started(1)
            await caller.wait_closed()
    ((before, after),) = bridge.written
    if stamp_arrivals:
        assert before - SLACK_S <= turn.start <= after + SLACK_S
    else:
        assert turn.start >= after + STALL_S


@pytest.mark.parametrize("stamp_arrivals", [True, False])
async def test_the_sim_records_client_events_by_arrival_when_asked(
    nursery: trio.Nursery, stamp_arrivals: bool
) -> None:
    sim = SimUpstream(SimUpstreamOptions(clock=time.monotonic, stamp_arrivals=stamp_arrivals))
    await nursery.start(sim.serve)
    update = {"type": "session.update", "session": {"type": "realtime"}}
    with trio.fail_after(5):
        upstream = await connect_upstream(sim.url, None, timeout_s=5)
        try:
            await upstream.receive()  # session.created
            fd = upstream.send_fd()
            assert fd is not None
            before, after = _write_then_stall(fd, _text_frame(update, mask=True))
            # Its answer shows the sim has read it; nothing else was sent before.
            assert json.loads(await upstream.receive())["type"] == "session.updated"
        finally:
            await upstream.aclose()
        session = await sim.wait_for_session(0)
        await session.closed.wait()
    ((received_at, event),) = session.received
    assert event == update
    if stamp_arrivals:
        assert before - SLACK_S <= received_at <= after + SLACK_S
    else:
        assert received_at >= after + STALL_S
