"""Kernel receive times in the simulated caller, over real loopback TCP on the real clock.

The stamps are the kernel's wall-clock times, so these tests cannot run on
``autojump_clock``; a stalled event loop is made with a blocking ``time.sleep`` (the lag
the stamps exist to take out), not to wait for anything.
"""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest
import trio
from trio_websocket import WebSocketConnection, WebSocketRequest, serve_websocket

from bridge.sim.arrival import ArrivalStampedStream
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.script import At, CallerScript

STALL_S = 0.03
"""How long the test blocks its own event loop after the peer's write."""
SLACK_S = 0.002
"""Room for the step between a clock read and the kernel's stamp of the same write."""


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
        await stamped.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await stamped.receive_some()
        with pytest.raises(ValueError, match="max_bytes"):
            await stamped.receive_some(0)


@pytest.mark.parametrize("stamp_arrivals", [True, False])
async def test_the_caller_times_bridge_media_by_arrival_when_asked(
    nursery: trio.Nursery, stamp_arrivals: bool
) -> None:
    written: list[tuple[float, float]] = []

    async def bridge(request: WebSocketRequest) -> None:
        ws: WebSocketConnection = await request.accept()
        start = json.loads(await ws.get_message())
        while start["event"] != "start":
            start = json.loads(await ws.get_message())
        media = {"event": "media", "streamSid": start["streamSid"], "media": {"payload": "//8="}}
        before = time.monotonic()
        await ws.send_message(json.dumps(media))
        written.append((before, time.monotonic()))
        time.sleep(STALL_S)  # noqa: ASYNC251 -- the stall is the point: a blocked loop
        await ws.aclose()

    server = await nursery.start(serve_websocket, bridge, "127.0.0.1", 0, None)
    caller = SimCaller(
        CallerOptions(
            url=f"ws://127.0.0.1:{server.port}/media",
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
    ((before, after),) = written
    if stamp_arrivals:
        assert before - SLACK_S <= turn.start <= after + SLACK_S
    else:
        assert turn.start >= after + STALL_S
