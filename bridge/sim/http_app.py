"""A tiny HTTP/1.1 server (h11 over Trio sockets) for the simulated application side.

The demo's tool server, the fake Twilio REST API, and the test and benchmark applications
run on it: an ``async`` handler gets a :class:`Request` and returns a :class:`Reply`.
Keep-alive connections are served in order; every exchange is recorded with the clock time
its reply was written (:attr:`HttpApp.exchanges`), which is what the benchmarks measure
from. It depends on h11 only (httpx's own HTTP/1.1 engine), not on the bridge's server.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import h11
import trio
from loguru import logger

MAX_BODY_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    """Names in lower case."""
    body: bytes
    received_at: float
    """Clock time the whole request had arrived."""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"

    @classmethod
    def of(cls, value: object, status: int = 200) -> Reply:
        return cls(status, json.dumps(value).encode())


@dataclass(frozen=True, slots=True)
class Exchange:
    request: Request
    reply: Reply
    replied_at: float
    """Clock time the reply was written to the socket."""


Handler = Callable[[Request], Awaitable[Reply]]


@dataclass(eq=False)
class HttpApp:
    """``await nursery.start(app.serve)`` returns its base URL (``http://127.0.0.1:port``)."""

    handler: Handler
    host: str = "127.0.0.1"
    port: int = 0
    clock: Callable[[], float] = trio.current_time
    exchanges: list[Exchange] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._connection, listeners)
            task_status.started(f"http://{self.host}:{port}")

    async def wait_for(self, ready: Callable[[list[Exchange]], bool]) -> list[Exchange]:
        """Until ``ready(exchanges)`` holds; the exchanges then."""
        while not ready(self.exchanges):
            await self._changed.wait()
        return self.exchanges

    def _record(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
        self._changed.set()
        self._changed = trio.Event()

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while True:
                    request = await self._read(conn, stream)
                    if request is None:
                        return
                    try:
                        reply = await self.handler(request)
                    except Exception as exc:  # noqa: BLE001 - a test app's bug is a 500, logged
                        logger.opt(exception=exc).error("sim http app: handler failed")
                        reply = Reply(500, b'{"error": "handler failed"}')
                    await self._write(conn, stream, reply)
                    self._record(Exchange(request, reply, self.clock()))
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
            except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _read(self, conn: h11.Connection, stream: trio.SocketStream) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                if not data and head is None:
                    return None
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    raise h11.LocalProtocolError("body too large", 413)
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = {k.decode().lower(): v.decode() for k, v in head.headers}
                return Request(
                    head.method.decode(), head.target.decode(), headers, bytes(body), self.clock()
                )
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _write(self, conn: h11.Connection, stream: trio.SocketStream, reply: Reply) -> None:
        headers = [("content-type", reply.content_type), ("content-length", str(len(reply.body)))]
        parts = [conn.send(h11.Response(status_code=reply.status, headers=headers))]
        if reply.body:
            parts.append(conn.send(h11.Data(data=reply.body)))
        parts.append(conn.send(h11.EndOfMessage()))
        await stream.send_all(b"".join(p for p in parts if p))
