"""A tiny WebSocket client for tests: it owns its TCP stream, so no socket is ever leaked.

trio-websocket 0.12.2's ``open_websocket_url`` never closes its socket when the server
starts the close (``aclose`` returns early), which ``filterwarnings=error`` turns into a
ResourceWarning failure; owning the stream avoids that.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

Event = dict[str, Any]


@asynccontextmanager
async def connect(
    url: str, headers: list[tuple[bytes, bytes]] | None = None
) -> AsyncIterator[WebSocketConnection]:
    """A client connection to ``url`` (``ws://host:port/path?query``)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream, trio.open_nursery() as nursery:
        resource = f"{parts.path}?{parts.query}" if parts.query else parts.path
        ws = await wrap_client_stream(
            nursery, stream, parts.netloc, resource, extra_headers=headers
        )
        try:
            yield ws
        finally:
            with trio.move_on_after(2):
                await ws.aclose()
            nursery.cancel_scope.cancel()


async def recv(ws: WebSocketConnection) -> Event:
    event: Event = json.loads(await ws.get_message())
    return event


async def recv_until(ws: WebSocketConnection, type_: str) -> list[Event]:
    events: list[Event] = []
    while not events or events[-1]["type"] != type_:
        events.append(await recv(ws))
    return events


async def send(ws: WebSocketConnection, event: Event) -> None:
    await ws.send_message(json.dumps(event))
