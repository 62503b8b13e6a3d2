"""The WebSocket's own framing of the common frames (:mod:`bridge.runtime.wsframes`) gives
what websockets' protocol gives, on both sides, over real sockets: every message in order
however the bytes are cut, pings answered, fragments and broken frames still websockets'
to handle with its close codes, and the frames we make readable by websockets."""

from __future__ import annotations

import contextlib
import itertools
import socket

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State
from websockets.server import ServerProtocol

from bridge.runtime.upstream import connect_upstream
from bridge.runtime.websocket import PROTOCOL_LOG, WebSocket, server_protocol
from bridge.runtime.wsframes import Stop, scan

MAX_MESSAGE = 1 << 16


def _ours(side: Side, sock: trio.socket.SocketType) -> WebSocket:
    if side is Side.SERVER:
        return WebSocket(trio.SocketStream(sock), server_protocol(MAX_MESSAGE))
    proto = Protocol(Side.CLIENT, state=State.OPEN, max_size=MAX_MESSAGE, logger=PROTOCOL_LOG)
    return WebSocket(trio.SocketStream(sock), proto)


def _peer(side: Side) -> Protocol:
    """The other end of ``side``."""
    other = Side.CLIENT if side is Side.SERVER else Side.SERVER
    return Protocol(other, state=State.OPEN, max_size=None, logger=PROTOCOL_LOG)


# One step of what the peer sends: ("text", str) | ("binary", bytes) | ("ping", bytes)
# | ("pong", bytes) | ("fragments", list of str parts).
_STEPS = st.one_of(
    st.tuples(st.just("text"), st.text(max_size=300)),
    st.tuples(st.just("text"), st.text(min_size=126, max_size=400)),
    st.tuples(st.just("binary"), st.binary(max_size=200)),
    st.tuples(st.just("ping"), st.binary(max_size=20)),
    st.tuples(st.just("pong"), st.binary(max_size=20)),
    st.tuples(st.just("fragments"), st.lists(st.text(max_size=40), min_size=2, max_size=3)),
)


def _encode(peer: Protocol, steps: list[tuple[str, object]]) -> tuple[bytes, list[object]]:
    """The bytes of ``steps`` as the peer frames them, and the messages they carry."""
    messages: list[object] = []
    for kind, value in steps:
        match kind:
            case "text":
                assert isinstance(value, str)
                peer.send_text(value.encode())
                messages.append(value)
            case "binary":
                assert isinstance(value, bytes)
                peer.send_binary(value)
                messages.append(value)
            case "ping":
                assert isinstance(value, bytes)
                peer.send_ping(value)
            case "pong":
                assert isinstance(value, bytes)
                peer.send_pong(value)
            case "fragments":
                assert isinstance(value, list)
                peer.send_text(value[0].encode(), fin=False)
                for part in value[1:-1]:
                    peer.send_continuation(part.encode(), fin=False)
                peer.send_continuation(value[-1].encode(), fin=True)
                messages.append("".join(value))
    return b"".join(peer.data_to_send()), messages


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


async def _deliver(side: Side, chunks: list[bytes]) -> tuple[list[str | bytes], list[Frame], int]:
    """Our ``side`` reads ``chunks`` (each read alone), then the peer's close: the messages
    it received, the frames it wrote back and its close code."""
    ours_raw, peer_sock = socket.socketpair()
    peer_sock.setblocking(False)
    ws = _ours(side, trio.socket.from_stdlib_socket(ours_raw))
    received: list[str | bytes] = []
    peer = _peer(side)
    with ours_raw, peer_sock:
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                while (message := await ws.receive()) is not None:
                    received.append(message)

            nursery.start_soon(read)
            for chunk in chunks:
                peer_sock.sendall(chunk)
                await trio.testing.wait_all_tasks_blocked()
            peer.send_close(1000, "done")
            peer_sock.sendall(b"".join(peer.data_to_send()))
        with contextlib.suppress(BlockingIOError):
            peer.receive_data(peer_sock.recv(1 << 20))
        frames = [e for e in peer.events_received() if isinstance(e, Frame)]
    assert ws.close_code is not None
    return received, frames, ws.close_code


@settings(max_examples=150, deadline=None)
@given(
    side=st.sampled_from([Side.SERVER, Side.CLIENT]),
    steps=st.lists(_STEPS, max_size=12),
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
)
def test_every_message_arrives_in_order_however_the_bytes_are_cut(
    side: Side, steps: list[tuple[str, object]], cuts: list[int]
) -> None:
    data, messages = _encode(_peer(side), steps)

    async def run() -> tuple[list[str | bytes], list[Frame], int]:
        with trio.fail_after(5):
            return await _deliver(side, _cut(data, cuts))

    received, frames, close_code = trio.run(run)
    assert received == messages
    pings = [value for kind, value in steps if kind == "ping"]
    assert [bytes(f.data) for f in frames if f.opcode is Opcode.PONG] == pings
    assert frames[-1].opcode is Opcode.CLOSE  # the reply to the peer's close
    assert close_code == 1000


@pytest.mark.parametrize("side", [Side.SERVER, Side.CLIENT])
@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
async def test_frames_we_make_are_read_by_websockets(side: Side, length: int) -> None:
    with trio.fail_after(5):
        ours_sock, peer_sock = trio.socket.socketpair()
        ws = _ours(side, ours_sock)
        texts = ["é" * (length // 2) + "x" * (length % 2), "next"]
        with ours_sock, peer_sock:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws.send_texts, texts)
                peer = _peer(side)
                frames: list[Frame] = []
                while len(frames) < 2:
                    peer.receive_data(await peer_sock.recv(1 << 20))
                    assert peer.parser_exc is None
                    frames += [e for e in peer.events_received() if isinstance(e, Frame)]
        assert [bytes(f.data).decode() for f in frames] == texts
        assert all(f.fin and f.opcode is Opcode.TEXT for f in frames)


def _raw_frame(first: int, payload: bytes, *, masked: bool) -> bytes:
    assert len(payload) < 126
    key = b"\x01\x02\x03\x04"
    if not masked:
        return bytes((first, len(payload))) + payload
    return (
        bytes((first, 0x80 | len(payload)))
        + key
        + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    )


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (_raw_frame(0x81, b"unmasked from a client", masked=False), 1002),
        (_raw_frame(0xC1, b"reserved bit", masked=True), 1002),
        (_raw_frame(0x83, b"unknown opcode", masked=True), 1002),
        (_raw_frame(0x80, b"continuation of nothing", masked=True), 1002),
        (_raw_frame(0x81, b"\xff\xfe not utf-8", masked=True), 1007),
        (bytes((0x81, 0xFF)) + (MAX_MESSAGE + 1).to_bytes(8, "big"), 1009),
    ],
)
async def test_a_broken_frame_after_good_ones_closes_with_websockets_code(
    frame: bytes, code: int
) -> None:
    with trio.fail_after(5):
        ours_sock, peer_sock = trio.socket.socketpair()
        ws = _ours(Side.SERVER, ours_sock)
        good = _raw_frame(0x81, b"first", masked=True)
        with ours_sock, peer_sock:
            await peer_sock.send(good + frame)
            assert await ws.receive() == "first"
            assert await ws.receive() is None
            assert ws.close_code == code
            close = _peer(Side.SERVER)
            close.receive_data(await peer_sock.recv(1 << 16))
            sent = [e for e in close.events_received() if isinstance(e, Frame)]
            assert [f.opcode for f in sent] == [Opcode.CLOSE]


async def test_a_close_ends_the_stream_and_what_follows_it_is_ignored() -> None:
    with trio.fail_after(5):
        ours_sock, peer_sock = trio.socket.socketpair()
        ws = _ours(Side.SERVER, ours_sock)
        peer = _peer(Side.SERVER)
        peer.send_text(b"before")
        peer.send_close(1000, "bye")
        after = _raw_frame(0x81, b"after", masked=True)
        with ours_sock, peer_sock:
            await peer_sock.send(b"".join(peer.data_to_send()) + after)
            assert await ws.receive() == "before"
            assert await ws.receive() is None
            assert (ws.close_code, ws.close_reason) == (1000, "bye")


async def test_a_frame_cut_by_the_end_of_the_stream_is_an_abnormal_closure() -> None:
    with trio.fail_after(5):
        ours_sock, peer_sock = trio.socket.socketpair()
        ws = _ours(Side.SERVER, ours_sock)
        with ours_sock, peer_sock:
            await peer_sock.send(_raw_frame(0x81, b"cut short", masked=True)[:-3])
        assert await ws.receive() is None
        assert ws.close_code == 1006


def test_scan_takes_whole_data_frames_and_stops_at_anything_else() -> None:
    text = _raw_frame(0x81, b"hello", masked=True)
    ping = _raw_frame(0x89, b"p", masked=True)
    both = len(text) + len(ping)
    assert scan(text + ping + text, peer_masks=True, max_size=100) == (
        [(True, b"hello")],
        len(text),
        Stop.CONTROL,
        both,
    )
    assert scan(text + text[:-1], peer_masks=True, max_size=100) == (
        [(True, b"hello")],
        len(text),
        Stop.MORE,
        0,
    )
    assert scan(ping[:-1], peer_masks=True, max_size=100) == ([], 0, Stop.MORE, 0)
    assert scan(text, peer_masks=True, max_size=4) == ([], 0, Stop.OTHER, 0)
    assert scan(text, peer_masks=False, max_size=100) == ([], 0, Stop.OTHER, 0)


async def test_frames_that_come_with_the_handshake_answer_are_not_lost() -> None:
    """The server's first events may share a segment with its ``101``: they are read as
    frames, the last one cut across reads."""
    first_events = ['{"type":"session.created"}', '{"type":"x","pad":"' + "p" * 300 + '"}']
    with trio.fail_after(5):
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]

        async def serve() -> None:
            stream = await listener.accept()
            async with stream:
                server = ServerProtocol(logger=PROTOCOL_LOG)
                while not (requests := [e for e in server.events_received()]):
                    server.receive_data(await stream.receive_some(65536))
                server.send_response(server.accept(requests[0]))
                for event in first_events:
                    server.send_text(event.encode())
                data = b"".join(server.data_to_send())
                await stream.send_all(data[:-5])  # the head, the first frame, most of the second
                await trio.testing.wait_all_tasks_blocked()
                await stream.send_all(data[-5:])
                await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            upstream = await connect_upstream(f"ws://127.0.0.1:{port}/v1", None, timeout_s=5)
            received = [await upstream.receive() for _ in first_events]
            nursery.cancel_scope.cancel()  # the server closes its end
        await upstream.aclose()
        await listener.aclose()
    assert received == first_events
