"""The one port: HTTP/1.1 (h11) and the WebSocket upgrade (wsproto), on plain Trio streams.

Webhook, health, readiness, metrics, the notes API and the Twilio media stream share one
listening port, as Twilio and a load balancer expect. The protocol work is h11's and
wsproto's (the sans-IO libraries hypercorn itself is built on); this module only reads,
writes and enforces limits. Owning the connection is what lets a call's reader task read
its socket directly (see :mod:`bridge.runtime.websocket`): no server task and no queue
between the socket and the call, which is most of the per-message CPU of a media stream.

Every connection runs in its own task and is the unit of failure: a bug in a handler is
logged once with its traceback, answered with 500 when a response can still be sent, and
the connection is closed; the server keeps serving.

Limits (:class:`HttpLimits`; the README lists them): request head size (431 beyond it),
body size (413), the time a request (head and body) may take to arrive, idle keep-alive
time, and the WebSocket message size (1009). Anything h11 finds malformed is a 400.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Protocol
from urllib.parse import unquote

import h11
import trio
from loguru import logger
from wsproto import ConnectionType
from wsproto.events import AcceptConnection
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError as WsHandshakeError

from bridge.runtime.websocket import WebSocket

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_head_bytes: int = 16 * 1024
    """Request line and headers."""
    max_body_bytes: int = 64 * 1024
    request_timeout_s: float = 10.0
    """From the end of the previous response (or the connection) to the end of this request."""
    max_ws_message_chars: int = 1024 * 1024


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
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` (0: any free port) until cancelled; reports the bound address.

    Raises:
        OSError: the port cannot be bound (in use, not an address of this machine, ...).
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    async with trio.open_nursery() as connections:
        task_status.started((host, int(bound[1])))
        await trio.serve_listeners(
            partial(_serve_connection, app, limits), listeners, handler_nursery=connections
        )


async def _serve_connection(app: HttpApp, limits: HttpLimits, stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_bytes)
    upgraded = False
    try:
        while True:
            request: HttpRequest | None = None
            with trio.move_on_after(limits.request_timeout_s) as waited:
                request = await _read_request(stream, conn, limits)
            if waited.cancelled_caught:
                await _answer_if_possible(stream, conn, HttpResponse(408, b"request timeout\n"))
                return
            if request is None:
                return
            if _is_websocket_upgrade(request):
                upgraded = True
                await _upgrade(app, limits, stream, conn, request)
                return
            await _respond(stream, conn, await app.http(request))
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except _TooLarge:
        await _answer_if_possible(stream, conn, HttpResponse(413, b"body too large\n"))
    except h11.RemoteProtocolError as exc:
        status = exc.error_status_hint if exc.error_status_hint >= 400 else 400
        await _answer_if_possible(stream, conn, HttpResponse(status, b"bad request\n"))
    except Exception:  # noqa: BLE001 - the connection boundary: one bad request ends only itself
        logger.exception("HTTP_ERROR a bug in the bridge while serving a request")
        if not upgraded:
            await _answer_if_possible(stream, conn, HttpResponse(500, b"internal error\n"))
    finally:
        await trio.aclose_forcefully(stream)


class _TooLarge(Exception):
    """The request body is over the limit."""


async def _next_event(stream: trio.SocketStream, conn: h11.Connection) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        conn.receive_data(data)


async def _read_request(
    stream: trio.SocketStream, conn: h11.Connection, limits: HttpLimits
) -> HttpRequest | None:
    """The next whole request, or ``None`` when the client closed the connection."""
    event = await _next_event(stream, conn)
    if isinstance(event, h11.ConnectionClosed):
        return None
    if not isinstance(event, h11.Request):
        raise h11.RemoteProtocolError("expected a request", error_status_hint=400)
    target = event.target.decode("latin-1")
    path, _, query = target.partition("?")
    head = HttpRequest(
        method=event.method.decode("ascii", "replace"),
        path=unquote(path),
        query=query,
        headers=tuple((bytes(k), bytes(v)) for k, v in event.headers),
    )
    if _is_websocket_upgrade(head):
        return head
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
    stream: trio.SocketStream,
    conn: h11.Connection,
    request: HttpRequest,
) -> None:
    refusal = await app.refuse_websocket(request)
    if refusal is not None:
        await _respond(stream, conn, refusal, close=True)
        return
    handshake = H11Handshake(ConnectionType.SERVER)
    try:
        target = request.path + (f"?{request.query}" if request.query else "")
        # Checks the upgrade's headers (key, version) and raises if they are wrong.
        handshake.initiate_upgrade_connection(list(request.headers), target)
    except WsHandshakeError:
        await _respond(stream, conn, HttpResponse(400, b"bad websocket upgrade\n"), close=True)
        return
    await stream.send_all(handshake.send(AcceptConnection()))
    connection = handshake.connection
    assert connection is not None  # set by the accept just sent
    received, _closed = conn.trailing_data
    ws = WebSocket(
        stream, connection, max_message_chars=limits.max_ws_message_chars, received=received
    )
    try:
        await app.websocket(request, ws)
    finally:
        with trio.move_on_after(1.0, shield=True):
            await ws.aclose()


def _response_events(response: HttpResponse, close: bool) -> Iterable[h11.Event]:
    headers = [
        (b"content-type", response.content_type.encode("latin-1")),
        (b"content-length", str(len(response.body)).encode()),
        *response.headers,
    ]
    if close:
        headers.append((b"connection", b"close"))
    yield h11.Response(status_code=response.status, headers=headers)
    if response.body:
        yield h11.Data(data=response.body)
    yield h11.EndOfMessage()


async def _respond(
    stream: trio.SocketStream, conn: h11.Connection, response: HttpResponse, *, close: bool = False
) -> None:
    data = b"".join(conn.send(event) or b"" for event in _response_events(response, close))
    await stream.send_all(data)


async def _answer_if_possible(
    stream: trio.SocketStream, conn: h11.Connection, response: HttpResponse
) -> None:
    """An error answer, when h11 is still at a point where a response can be sent."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    with trio.move_on_after(1.0):
        try:
            await _respond(stream, conn, response, close=True)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            return
