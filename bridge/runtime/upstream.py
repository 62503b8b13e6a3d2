"""The OpenAI leg of a call: a trio-websocket client connection to the Realtime API.

The connection's internal reader task runs in a nursery owned by the call (not by an
``async with open_websocket_url``), so the call decides when the socket is closed: after
its tasks stop and before the Twilio leg ends, shielded and time-bounded.

Failure modes: :func:`connect_upstream` raises :class:`UpstreamUnavailable` (refused,
rejected, TLS, timeout, bad URL). Sending or receiving on a closed socket raises
:class:`bridge.runtime.errors.CallEnded` with the close code and reason.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    connect_websocket_url,
)

from bridge.config import Secret
from bridge.core import realtime as rt
from bridge.runtime.errors import CallEnded

MESSAGE_QUEUE_SIZE = 16
"""trio-websocket's receive queue (messages); the OpenAI reader always drains it."""
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""``session.created``/``updated`` echo the whole configuration, instructions included."""


class UpstreamUnavailable(Exception):
    """The Realtime WebSocket could not be opened."""


def closed_reason(exc: ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None:
        return "openai_closed code=1006"
    detail = f" {reason.reason}" if reason.reason else ""
    return f"openai_closed code={reason.code}{detail}"


class Upstream:
    __slots__ = ("_ws",)

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws

    async def send_text(self, text: str) -> None:
        try:
            await self._ws.send_message(text)
        except ConnectionClosed as exc:
            raise CallEnded(closed_reason(exc)) from None

    async def send_event(self, event: Mapping[str, Any]) -> None:
        await self.send_text(rt.dumps(event))

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
        await self._ws.aclose(code)

    @property
    def is_closed(self) -> bool:
        return self._ws.closed is not None


async def connect_upstream(
    nursery: trio.Nursery, url: str, api_key: Secret | None, *, timeout_s: float
) -> Upstream:
    """Open the Realtime WebSocket; its reader task lives in ``nursery``."""
    headers = [(b"authorization", f"Bearer {api_key.reveal()}".encode())] if api_key else []
    try:
        with trio.fail_after(timeout_s):
            ws = await connect_websocket_url(
                nursery,
                url,
                extra_headers=headers,
                message_queue_size=MESSAGE_QUEUE_SIZE,
                max_message_size=MAX_MESSAGE_BYTES,
            )
    except trio.TooSlowError:
        raise UpstreamUnavailable(f"no handshake within {timeout_s:g} s") from None
    except HandshakeError as exc:
        raise UpstreamUnavailable(f"handshake failed: {exc!r}") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}") from None
    return Upstream(ws)
