"""The OpenAI leg of a call: a WebSocket client connection to the Realtime API.

The handshake is websockets' sans-IO client's, over a Trio TCP stream, TLS for ``wss://``.
After it, the connection is a :class:`bridge.runtime.websocket.WebSocket`: the call's OpenAI
reader reads the socket itself (no reader task of a library in between), and the call
decides when the socket is closed: after its tasks stop and before the Twilio leg ends,
shielded and time-bounded. Client events are encoded here, once, at the edge
(:func:`bridge.core.realtime_client.encode`).

Failure modes: :func:`connect_upstream` raises :class:`bridge.errors.UpstreamUnavailable`
(refused, rejected with an HTTP status, TLS, timeout, bad URL). Sending, receiving or
pinging on a closed socket raises :class:`bridge.errors.UpstreamLost` with the close code
and reason.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidURI
from websockets.http11 import Response
from websockets.uri import parse_uri

from bridge.config import Secret
from bridge.core.ending import CallEnd, EndReason
from bridge.core.realtime_client import ClientEvent, encode
from bridge.errors import UpstreamLost, UpstreamUnavailable
from bridge.runtime.websocket import PROTOCOL_LOG, RECEIVE_BYTES, WebSocket, WebSocketClosed

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""``session.created``/``updated`` echo the whole configuration, instructions included."""


def closed_reason(code: int | None, reason: str) -> CallEnd:
    detail = f" {reason}" if reason else ""
    return CallEnd(EndReason.OPENAI_CLOSED, f"code={code or 1006}{detail}")


class Upstream:
    __slots__ = ("_ws",)

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def send(self, event: ClientEvent) -> None:
        try:
            await self._ws.send_texts([encode(event)])
        except WebSocketClosed as closed:
            raise UpstreamLost(closed_reason(closed.code, closed.reason)) from None

    def send_fd(self) -> int | None:
        """The socket's descriptor when only the kernel could make a send wait now
        (:meth:`bridge.runtime.websocket.WebSocket.send_fd`)."""
        return self._ws.send_fd()

    async def receive(self) -> str | bytes:
        message = await self._ws.receive()
        if message is None:
            raise UpstreamLost(closed_reason(self._ws.close_code, self._ws.close_reason))
        return message

    @property
    def last_received_at(self) -> float:
        """Trio time anything (an event, a pong) last came from the service."""
        return self._ws.last_received_at

    async def ping(self) -> None:
        """Wait for a pong; raises :class:`UpstreamLost` if the socket closes meanwhile."""
        try:
            await self._ws.ping()
        except WebSocketClosed as closed:
            raise UpstreamLost(closed_reason(closed.code, closed.reason)) from None

    async def aclose(self, code: int = 1000) -> None:
        """Close handshake, then the TCP stream (closed even if this is cancelled)."""
        await self._ws.aclose(code)


def _target(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of a ``ws://`` or ``wss://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    tls = parts.scheme == "wss"
    return parts.hostname, parts.port or (443 if tls else 80), tls


async def _handshake(
    stream: trio.abc.Stream, url: str, api_key: Secret | None
) -> tuple[ClientProtocol, bytes]:
    """The opened protocol and the bytes that came after the ``101`` answer's head.

    The protocol is given the answer's head alone, so that it has parsed nothing after its
    handshake (the frames that follow are :class:`WebSocket`'s to read); a refusal's body
    is given to it too, to be read up to its end."""
    try:
        proto = ClientProtocol(parse_uri(url), max_size=MAX_MESSAGE_BYTES, logger=PROTOCOL_LOG)
    except InvalidURI as exc:
        raise ValueError(str(exc)) from None
    request = proto.connect()
    if api_key is not None:
        request.headers["Authorization"] = f"Bearer {api_key.reveal()}"
    proto.send_request(request)
    await stream.send_all(b"".join(proto.data_to_send()))
    seen = b""  # the head's last bytes read so far (its end may be split across reads)
    head_done = False
    while True:
        data = bytes(await stream.receive_some(RECEIVE_BYTES))
        after_head = b""
        if not data:
            proto.receive_eof()  # may end a refusal's body, read up to the end
        elif head_done:
            proto.receive_data(data)
        else:
            end = (seen + data).find(HEAD_END)
            if end < 0:
                seen = (seen + data)[-len(HEAD_END) :]
                proto.receive_data(data)
            else:
                cut = end + len(HEAD_END) - len(seen)
                head_done = True
                proto.receive_data(data[:cut])
                after_head = data[cut:]
        events = proto.events_received()
        response = next((e for e in events if isinstance(e, Response)), None)
        if response is None and after_head:
            proto.receive_data(after_head)  # the body of a refusal
            events = proto.events_received()
            response = next((e for e in events if isinstance(e, Response)), None)
        if proto.handshake_exc is not None:
            if response is not None and response.status_code != 101:
                raise _rejected(response.status_code)
            raise UpstreamUnavailable(f"handshake failed: {proto.handshake_exc}")
        if response is not None:
            return proto, after_head
        if not data:
            raise UpstreamUnavailable("handshake failed: the server closed the connection")


HEAD_END = b"\r\n\r\n"
"""Ends an HTTP head."""


NOT_RETRYABLE_STATUSES = frozenset({400, 401, 403, 404})
"""A handshake answered with one of these will be answered so again: the key, the account
or the URL is wrong, and retrying only delays the fallback."""


def _rejected(status: int) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"handshake failed: HTTP {status}", retryable=status not in NOT_RETRYABLE_STATUSES
    )


async def connect_upstream(url: str, api_key: Secret | None, *, timeout_s: float) -> Upstream:
    """Open the Realtime WebSocket within ``timeout_s``."""
    stream: trio.abc.Stream | None = None
    try:
        host, port, tls = _target(url)
        with trio.fail_after(timeout_s):
            tcp = await trio.open_tcp_stream(host, port)
            stream = tcp
            if tls:
                stream = trio.SSLStream(
                    tcp, ssl.create_default_context(), server_hostname=host, https_compatible=True
                )
            proto, received = await _handshake(stream, url, api_key)
    except BaseException as exc:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        match exc:
            case trio.TooSlowError():
                raise UpstreamUnavailable(f"no handshake within {timeout_s:g} s") from None
            case ValueError():
                raise UpstreamUnavailable(f"{exc}", retryable=False) from None
            case OSError() | ssl.SSLError() | trio.BrokenResourceError():
                raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}") from None
        raise
    return Upstream(WebSocket(stream, proto, received=received))
