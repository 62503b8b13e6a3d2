"""The OpenAI leg of a call: a trio-websocket client connection to the Realtime API.

The connection's internal reader task runs in a nursery owned by the call (not by an
``async with open_websocket_url``), so the call decides when the socket is closed: after
its tasks stop and before the Twilio leg ends, shielded and time-bounded. The TCP (or TLS)
stream is opened here and wrapped, because a trio-websocket *client* never closes its
stream itself after the peer's close handshake (RFC 6455 has the client wait for the
server's TCP close): :meth:`Upstream.aclose` always closes it, so no call leaks a socket.

Client events are encoded here, once, at the edge (:func:`bridge.core.realtime_client.encode`).

Failure modes: :func:`connect_upstream` raises :class:`bridge.errors.UpstreamUnavailable`
(refused, rejected, TLS, timeout, bad URL). Sending or receiving on a closed socket raises
:class:`bridge.errors.CallEnded` with the close code and reason.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from bridge.config import Secret
from bridge.core.ending import CallEnd, EndReason
from bridge.core.realtime_client import ClientEvent, encode
from bridge.errors import CallEnded, UpstreamUnavailable

MESSAGE_QUEUE_SIZE = 16
"""trio-websocket's receive queue (messages); the OpenAI reader always drains it."""
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""``session.created``/``updated`` echo the whole configuration, instructions included."""


def closed_reason(exc: ConnectionClosed) -> CallEnd:
    reason = exc.reason
    if reason is None:
        return CallEnd(EndReason.OPENAI_CLOSED, "code=1006")
    detail = f" {reason.reason}" if reason.reason else ""
    return CallEnd(EndReason.OPENAI_CLOSED, f"code={reason.code}{detail}")


class Upstream:
    __slots__ = ("_stream", "_ws")

    def __init__(self, ws: WebSocketConnection, stream: trio.abc.Stream) -> None:
        self._ws = ws
        self._stream = stream

    async def send(self, event: ClientEvent) -> None:
        try:
            await self._ws.send_message(encode(event))
        except ConnectionClosed as exc:
            raise CallEnded(closed_reason(exc)) from None

    async def receive(self) -> str | bytes:
        try:
            message: str | bytes = await self._ws.get_message()
        except ConnectionClosed as exc:
            raise CallEnded(closed_reason(exc)) from None
        return message

    async def ping(self) -> None:
        """Wait for a pong; raises :class:`CallEnded` if the socket closes meanwhile."""
        try:
            await self._ws.ping()
        except ConnectionClosed as exc:
            raise CallEnded(closed_reason(exc)) from None

    async def aclose(self, code: int = 1000) -> None:
        """Close handshake, then the TCP stream (closed even if this is cancelled)."""
        try:
            await self._ws.aclose(code)
        finally:
            await self._stream.aclose()


def _target(url: str) -> tuple[str, int, str, bool]:
    """(host, port, resource, tls) of a ``ws://`` or ``wss://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    tls = parts.scheme == "wss"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or (443 if tls else 80), resource, tls


async def connect_upstream(
    nursery: trio.Nursery, url: str, api_key: Secret | None, *, timeout_s: float
) -> Upstream:
    """Open the Realtime WebSocket; its reader task lives in ``nursery``."""
    headers = [(b"authorization", f"Bearer {api_key.reveal()}".encode())] if api_key else []
    stream: trio.abc.Stream | None = None
    try:
        host, port, resource, tls = _target(url)
        with trio.fail_after(timeout_s):
            if tls:
                stream = await trio.open_ssl_over_tcp_stream(
                    host, port, ssl_context=ssl.create_default_context(), https_compatible=True
                )
            else:
                stream = await trio.open_tcp_stream(host, port)
            default_port = 443 if tls else 80
            ws = await wrap_client_stream(
                nursery,
                stream,
                host if port == default_port else f"{host}:{port}",
                resource,
                extra_headers=headers,
                message_queue_size=MESSAGE_QUEUE_SIZE,
                max_message_size=MAX_MESSAGE_BYTES,
            )
    except BaseException as exc:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        match exc:
            case trio.TooSlowError():
                raise UpstreamUnavailable(f"no handshake within {timeout_s:g} s") from None
            case HandshakeError() | ConnectionClosed():
                raise UpstreamUnavailable(f"handshake failed: {exc!r}") from None
            case OSError() | ssl.SSLError() | ValueError():
                raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}") from None
        raise
    return Upstream(ws, stream)
