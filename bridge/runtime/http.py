"""The one port: HTTP/1.1 (h11) and the WebSocket upgrade (websockets), on plain Trio streams.

Webhook, health, readiness, metrics, the notes API and the Twilio media stream share one
listening port, as Twilio and a load balancer expect. The protocol work is h11's (the
sans-IO library hypercorn itself is built on) and websockets' sans-IO protocol's (see
:mod:`bridge.runtime.websocket` for why not wsproto's); this module only reads,
writes and enforces limits. Owning the connection is what lets a call's reader task read
its socket directly (see :mod:`bridge.runtime.websocket`): no server task and no queue
between the socket and the call, which is most of the per-message CPU of a media stream.

Every connection runs in its own task and is the unit of failure: a bug in a handler is
logged once with its traceback, answered with 500 when a response can still be sent, and
the connection is closed; the server keeps serving.

Limits (:class:`HttpLimits`; the README lists them): request head size (431 beyond it),
body size (413, at once when ``Content-Length`` declares more), the time a request (head
and body) may take to arrive, idle keep-alive time included (408), and the WebSocket
message size (1009). Anything h11 finds malformed is a 400. After an error answer the
connection is closed gracefully, as after any answer that ends it (``Connection: close``,
HTTP/1.0, a refused upgrade): our side is shut down and what the client still sends is
read and dropped for a moment (:data:`LINGER_S`, :data:`LINGER_BYTES`), so the answer is
not lost to a TCP reset while the client is still writing.

``HEAD`` is answered like ``GET`` without the body (the app sees ``HEAD``). At most
:attr:`HttpLimits.busy_connections` connections parse or answer at once (see
:class:`_HttpStream`), so a burst of requests never holds up the calls' audio tasks.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Protocol
from urllib.parse import unquote

import h11
import trio
from loguru import logger
from websockets.datastructures import Headers as WsHeaders
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_extension, parse_subprotocol
from websockets.http11 import Request as WsRequest
from websockets.server import ServerProtocol

from bridge.runtime.websocket import PROTOCOL_LOG, WebSocket, server_protocol

Headers = tuple[tuple[bytes, bytes], ...]

_PROTOCOL_ERROR_TEXT = {
    431: b"request head too large\n",
    501: b"transfer encoding not supported\n",
}
"""The body of an error h11 found, by status (400 otherwise: ``bad request``)."""
LINGER_S = 1.0
LINGER_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_head_bytes: int = 16 * 1024
    """Request line and headers."""
    max_body_bytes: int = 64 * 1024
    request_timeout_s: float = 10.0
    """From the end of the previous response (or the connection) to the end of this request."""
    max_ws_message_bytes: int = 1024 * 1024
    busy_connections: int = 8
    """Connections parsing or answering at once (see :class:`_HttpStream`); the others wait
    their turn, without holding one while they wait on the network."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    """Percent-decoded path, without the query."""
    query: str
    """The raw query string, without the ``?``."""
    headers: Headers
    """Names lower-cased (h11)."""
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case), as bytes."""
        return next((value for key, value in self.headers if key == name), None)

    def header_values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Headers = ()


WebSocketStream = Callable[[trio.SocketStream], trio.abc.Stream]
"""Wraps the connection of an accepted WebSocket upgrade (see :func:`serve_http`)."""


class HttpApp(Protocol):
    async def http(self, request: HttpRequest) -> HttpResponse:
        """Answer one plain HTTP request."""

    async def refuse_websocket(self, request: HttpRequest) -> HttpResponse | None:
        """Why a WebSocket upgrade is refused (the HTTP answer), or ``None`` to accept it."""

    async def websocket(self, request: HttpRequest, ws: WebSocket) -> None:
        """Serve an accepted WebSocket; the connection is closed when this returns."""


async def serve_http(
    app: HttpApp,
    host: str,
    port: int,
    limits: HttpLimits,
    *,
    websocket_stream: WebSocketStream | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` (0: any free port) until cancelled; reports the bound address.

    ``websocket_stream`` wraps the connection of each accepted upgrade before its
    :class:`WebSocket` is built (the simulated upstream stamps kernel arrival times so);
    without it the WebSocket reads and writes the socket itself.

    Raises:
        OSError: the port cannot be bound (in use, not an address of this machine, ...).
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    async with trio.open_nursery() as connections:
        task_status.started((host, int(bound[1])))
        turns = trio.CapacityLimiter(limits.busy_connections)
        await trio.serve_listeners(
            partial(_serve_connection, app, limits, turns, websocket_stream),
            listeners,
            handler_nursery=connections,
        )


class _HttpStream:
    """A connection's stream while it speaks HTTP, and its turn at the server's work.

    Parsing and answering happen while holding one of the server's
    :attr:`HttpLimits.busy_connections` turns; every wait on the network gives the turn
    back. A burst of a thousand requests is then served a few at a time, and the tasks of
    live calls run between those few: otherwise every one of them parses in the same
    scheduling round, and a call's audio writer waits for the whole round (about 0.4 s for
    1000 notes: gaps the caller hears). A slow client waits without a turn, so it cannot
    hold one.
    """

    __slots__ = ("_held", "_turns", "socket")

    def __init__(self, socket: trio.SocketStream, turns: trio.CapacityLimiter) -> None:
        self.socket = socket
        """The stream itself (the WebSocket of an accepted upgrade reads it without turns)."""
        self._turns = turns
        self._held = False

    async def _take(self) -> None:
        await self._turns.acquire()
        self._held = True

    def give_back(self) -> None:
        if self._held:
            self._turns.release()
            self._held = False

    async def receive_some(self, max_bytes: int) -> bytes:
        self.give_back()
        try:
            return bytes(await self.socket.receive_some(max_bytes))
        finally:
            await self._take()

    async def send_all(self, data: bytes) -> None:
        self.give_back()
        try:
            await self.socket.send_all(data)
        finally:
            await self._take()

    async def send_eof(self) -> None:
        self.give_back()
        try:
            await self.socket.send_eof()
        finally:
            await self._take()


async def _serve_connection(
    app: HttpApp,
    limits: HttpLimits,
    turns: trio.CapacityLimiter,
    websocket_stream: WebSocketStream | None,
    socket: trio.SocketStream,
) -> None:
    stream = _HttpStream(socket, turns)
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_bytes)
    upgraded = False
    head_only = False
    """The request being answered is a HEAD: every answer to it, errors too, has no body."""
    try:
        while True:
            request: HttpRequest | None = None
            # An error before the next head is parsed answers that request, not the last.
            head_only = False
            with trio.move_on_after(limits.request_timeout_s) as waited:
                head = await _read_head(stream, conn)
                if head is not None:
                    request, head_bytes = head
                    head_only = request.method == "HEAD"
                    # h11 bounds only a head still arriving (max_incomplete_event_size); a
                    # whole head that came in one read is measured here.
                    if head_bytes > limits.max_head_bytes:
                        raise h11.RemoteProtocolError("head too large", error_status_hint=431)
                    if not _is_websocket_upgrade(request):
                        request = await _read_body(stream, conn, limits, request)
            if waited.cancelled_caught:
                timeout = HttpResponse(408, b"request timeout\n")
                await _answer_if_possible(stream, conn, timeout, head_only)
                return
            if request is None:
                return
            if _is_websocket_upgrade(request):
                upgraded = True
                await _upgrade(app, limits, stream, conn, request, websocket_stream)
                return
            await _respond(stream, conn, await app.http(request), head_only=head_only)
            if conn.our_state is h11.MUST_CLOSE:
                await _linger(stream)
                return
            conn.start_next_cycle()
    except _TooLarge:
        too_large = HttpResponse(413, b"body too large\n")
        await _answer_if_possible(stream, conn, too_large, head_only)
    except h11.RemoteProtocolError as exc:
        status = exc.error_status_hint if exc.error_status_hint >= 400 else 400
        text = _PROTOCOL_ERROR_TEXT.get(status, b"bad request\n")
        await _answer_if_possible(stream, conn, HttpResponse(status, text), head_only)
    except Exception:  # noqa: BLE001 - the connection boundary: one bad request ends only itself
        logger.exception("HTTP_ERROR a bug in the bridge while serving a request")
        if not upgraded:
            bug = HttpResponse(500, b"internal error\n")
            await _answer_if_possible(stream, conn, bug, head_only)
    finally:
        stream.give_back()
        await trio.aclose_forcefully(socket)


class _TooLarge(Exception):
    """The request body is over the limit."""


async def _next_event(stream: _HttpStream, conn: h11.Connection) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        conn.receive_data(data)


async def _read_head(stream: _HttpStream, conn: h11.Connection) -> tuple[HttpRequest, int] | None:
    """The next request's head (no body yet) and its size in bytes (request line and
    header lines), or ``None`` when the client closed the connection."""
    event = await _next_event(stream, conn)
    if isinstance(event, h11.ConnectionClosed):
        return None
    if not isinstance(event, h11.Request):
        raise h11.RemoteProtocolError("expected a request", error_status_hint=400)
    head_bytes = (
        len(event.method)
        + len(event.target)
        + sum(len(name) + len(value) + 4 for name, value in event.headers)
    )
    target = event.target.decode("latin-1")
    path, _, query = target.partition("?")
    request = HttpRequest(
        method=event.method.decode("ascii", "replace"),
        path=unquote(path),
        query=query,
        headers=tuple((bytes(k), bytes(v)) for k, v in event.headers),
    )
    return request, head_bytes


async def _read_body(
    stream: _HttpStream, conn: h11.Connection, limits: HttpLimits, head: HttpRequest
) -> HttpRequest:
    """The request of ``head`` with its body."""
    declared = head.header(b"content-length")
    # h11 has checked that it is a number; more than the limit need not be read to refuse.
    if declared is not None and int(declared) > limits.max_body_bytes:
        raise _TooLarge
    body = bytearray()
    while True:
        part = await _next_event(stream, conn)
        if isinstance(part, h11.Data):
            body += part.data
            if len(body) > limits.max_body_bytes:
                raise _TooLarge
        elif isinstance(part, h11.EndOfMessage):
            return HttpRequest(head.method, head.path, head.query, head.headers, bytes(body))
        else:
            raise h11.RemoteProtocolError("unexpected end of request", error_status_hint=400)


def _has_websocket_key(request: HttpRequest) -> bool:
    """Exactly one ``Sec-WebSocket-Key``, 16 bytes in base64 (RFC 6455, 4.1)."""
    keys = request.header_values(b"sec-websocket-key")
    try:
        return len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except binascii.Error:
        return False


def _is_websocket_upgrade(request: HttpRequest) -> bool:
    upgrade = request.header(b"upgrade")
    connection = b",".join(request.header_values(b"connection")).lower()
    return (
        request.method == "GET"
        and upgrade is not None
        and upgrade.lower() == b"websocket"
        and b"upgrade" in connection
    )


async def _upgrade(
    app: HttpApp,
    limits: HttpLimits,
    stream: _HttpStream,
    conn: h11.Connection,
    request: HttpRequest,
    websocket_stream: WebSocketStream | None,
) -> None:
    refusal = await app.refuse_websocket(request)
    if refusal is not None:
        await _respond(stream, conn, refusal, close=True)
        await _linger(stream)
        return
    accepted = _accept_upgrade(request)
    if accepted is None:
        await _respond(stream, conn, HttpResponse(400, b"bad websocket upgrade\n"), close=True)
        await _linger(stream)
        return
    await stream.send_all(accepted)
    received, _closed = conn.trailing_data
    stream.give_back()  # from here on this is a call: its reader reads the socket itself
    ws = WebSocket(
        stream.socket if websocket_stream is None else websocket_stream(stream.socket),
        server_protocol(limits.max_ws_message_bytes),
        received=bytes(received),
    )
    try:
        await app.websocket(request, ws)
    finally:
        with trio.move_on_after(1.0, shield=True):
            await ws.aclose()


def _accept_upgrade(request: HttpRequest) -> bytes | None:
    """The ``101`` answer to a valid upgrade (websockets checks its version, key and
    headers), or ``None`` for one that is not. No extension or subprotocol is agreed, but a
    malformed offer of one is refused, not ignored: the client is broken."""
    if not _has_websocket_key(request):
        return None
    try:
        for value in request.header_values(b"sec-websocket-extensions"):
            parse_extension(value.decode("latin-1"))
        for value in request.header_values(b"sec-websocket-protocol"):
            parse_subprotocol(value.decode("latin-1"))
    except InvalidHeader:
        return None
    target = request.path + (f"?{request.query}" if request.query else "")
    handshake = ServerProtocol(logger=PROTOCOL_LOG)
    headers = WsHeaders(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers
    )
    response = handshake.accept(WsRequest(target, headers, method=request.method))
    if handshake.handshake_exc is not None or response.status_code != 101:
        return None
    return response.serialize()


def _response_events(response: HttpResponse, close: bool, head_only: bool) -> Iterable[h11.Event]:
    headers = [
        (b"content-type", response.content_type.encode("latin-1")),
        (b"content-length", str(len(response.body)).encode()),
        *response.headers,
    ]
    if close:
        headers.append((b"connection", b"close"))
    yield h11.Response(status_code=response.status, headers=headers)
    if response.body and not head_only:
        yield h11.Data(data=response.body)
    yield h11.EndOfMessage()


async def _respond(
    stream: _HttpStream,
    conn: h11.Connection,
    response: HttpResponse,
    *,
    close: bool = False,
    head_only: bool = False,
) -> None:
    events = _response_events(response, close, head_only)
    await stream.send_all(b"".join(conn.send(event) or b"" for event in events))


async def _answer_if_possible(
    stream: _HttpStream, conn: h11.Connection, response: HttpResponse, head_only: bool
) -> None:
    """An error answer, when h11 is still at a point where a response can be sent."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    with trio.move_on_after(1.0):
        try:
            await _respond(stream, conn, response, close=True, head_only=head_only)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            return
    await _linger(stream)


async def _linger(stream: _HttpStream) -> None:
    """Shut our side down, then drop what the client still sends, for a bounded while."""
    dropped = 0
    with trio.move_on_after(LINGER_S):
        try:
            await stream.send_eof()
            while dropped < LINGER_BYTES:
                data = await stream.receive_some(65536)
                if not data:
                    return
                dropped += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
