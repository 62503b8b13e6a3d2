"""The Twilio leg of a call: the media stream's WebSocket (:mod:`bridge.runtime.websocket`).

All writes toward Twilio go through :attr:`TwilioLeg.lock`, a FIFO lock. The TX writer
takes frames from the core *and* writes them while holding the lock, and a barge-in writes
its ``clear`` under the same lock after the core has flushed the queue, so no audio of a
cancelled response can be written after the ``clear``. The frames written together (media
and its mark, or all the frames due at once) go out in one socket write.

Writing never raises here: once Twilio has gone away, writes are dropped and the
disconnect is reported once, by :meth:`TwilioLeg.receive` returning ``None``.
"""

from __future__ import annotations

import trio

from bridge.runtime.websocket import WebSocket, WebSocketClosed


class TwilioLeg:
    __slots__ = ("_ws", "closed_by_us", "disconnect_code", "lock")

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self.lock = trio.StrictFIFOLock()
        self.closed_by_us = False
        self.disconnect_code: int | None = None

    @property
    def connected(self) -> bool:
        return self.disconnect_code is None and not self.closed_by_us

    @property
    def has_pending(self) -> bool:
        """Frames already read from the socket wait for :meth:`receive`."""
        return self._ws.has_pending

    def write_fd(self) -> int | None:
        """The socket's descriptor when only the kernel could make a write wait now:
        :attr:`lock` is free (:meth:`bridge.runtime.websocket.WebSocket.send_fd`)."""
        return None if self.lock.locked() else self._ws.send_fd()

    async def receive(self) -> str | bytes | None:
        """Next frame from Twilio, or ``None`` once the socket is closed (code recorded)."""
        message = await self._ws.receive()
        if message is None and self.disconnect_code is None:
            self.disconnect_code = self._ws.close_code
        return message

    async def write(self, *texts: str) -> None:
        """Send text frames in one write; the caller holds :attr:`lock`."""
        if self.connected:
            try:
                await self._ws.send_texts(list(texts))
            except WebSocketClosed:
                return  # the reader sees the close and ends the call

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
        """Close the stream: Twilio then runs the TwiML after ``<Connect>`` (the fallback).
        Bounded by the caller's cancel scope; the socket is closed either way."""
        if self.closed_by_us:
            return
        self.closed_by_us = True
        await self._ws.aclose(code, reason)
