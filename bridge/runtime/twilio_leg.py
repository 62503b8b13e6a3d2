"""The Twilio leg of a call: one ASGI WebSocket connection served by hypercorn.

All writes toward Twilio go through :attr:`TwilioLeg.lock`, a FIFO lock. The TX writer
takes a frame from the core *and* writes it while holding the lock, and a barge-in writes
its ``clear`` under the same lock after the core has flushed the queue, so no audio of a
cancelled response can be written after the ``clear``.

Hypercorn ignores sends after the peer has gone away, so writing never raises here; a
disconnect is reported once, by :meth:`TwilioLeg.receive` returning ``None``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

Scope = Mapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class TwilioLeg:
    __slots__ = ("_receive", "_send", "closed_by_us", "disconnect_code", "lock")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.lock = trio.StrictFIFOLock()
        self.closed_by_us = False
        self.disconnect_code: int | None = None

    @property
    def connected(self) -> bool:
        return self.disconnect_code is None and not self.closed_by_us

    async def receive(self) -> str | bytes | None:
        """Next frame from Twilio, or ``None`` once the socket is closed (code recorded)."""
        while self.disconnect_code is None:
            message = await self._receive()
            kind = message.get("type")
            if kind == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    return str(text)
                return bytes(message.get("bytes") or b"")
            if kind == "websocket.disconnect":
                self.disconnect_code = int(message.get("code", 1006))
        return None

    async def write(self, text: str) -> None:
        """Send one text frame; the caller holds :attr:`lock`."""
        if self.connected:
            await self._send({"type": "websocket.send", "text": text})

    async def send_urgent(self, text: str) -> None:
        """Write one frame under :attr:`lock`, without yielding to the scheduler first when
        the lock is free.

        ``async with lock`` always checkpoints, and under load a checkpoint waits a full
        scheduling round; a barge-in ``clear`` should not.
        """
        try:
            self.lock.acquire_nowait()
        except trio.WouldBlock:
            await self.lock.acquire()
        try:
            await self.write(text)
        finally:
            self.lock.release()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the stream: Twilio then runs the TwiML after ``<Connect>`` (the fallback)."""
        if not self.connected:
            return
        self.closed_by_us = True
        await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})
