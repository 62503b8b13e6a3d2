"""One WebSocket over a Trio stream, driven by wsproto and read by the task that owns it.

Both legs of a call use it: the Twilio media stream (server side, after
:mod:`bridge.runtime.http` accepted the upgrade) and the Realtime connection (client side,
:mod:`bridge.runtime.upstream`). There is no reader task and no message queue inside: the
call's reader task calls :meth:`WebSocket.receive`, which reads the socket, and answers
pings and closes on the way. Each message costs one wake-up of that task instead of the
three a server library's reader task, its queue and our reader would cost
(``ws-stack-costs``: most of the CPU of a paced message is Trio wake-ups), and
:meth:`WebSocket.send_texts` writes several messages in one ``send_all``.

Limits: a message longer than ``max_message_chars`` is refused while it arrives (nothing
beyond the limit is kept) and the connection is closed with 1009. A protocol violation by
the peer closes it with the code wsproto gives (1002, 1007, ...).

Failure modes: :meth:`receive` returns ``None`` once the connection is closed, by either
side or by the network (then :attr:`close_code` is 1006); :meth:`send_texts` and
:meth:`ping` raise :class:`WebSocketClosed`. Nothing here raises on a peer that merely
vanishes, so the owner decides what a close means.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from typing import Protocol

import trio
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason

RECEIVE_BYTES = 65536
"""One read takes up to this much: a burst of frames is parsed after a single wake-up."""


class WebSocketClosed(Exception):
    """The connection is closed (or closing): nothing more can be sent."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"WebSocket closed with {code}" + (f" {reason}" if reason else ""))
        self.code = code
        self.reason = reason


class _Protocol(Protocol):
    """What both wsproto objects offer: ``Connection`` (after a server-side handshake) and
    ``WSConnection`` (a client, handshake included)."""

    @property
    def state(self) -> ConnectionState: ...

    def send(self, event: Event) -> bytes: ...

    def receive_data(self, data: bytes | None) -> None: ...

    def events(self) -> Iterable[Event]: ...


class WebSocket:
    __slots__ = (
        "_bytes_parts",
        "_closed_event",
        "_max_message_chars",
        "_message_chars",
        "_pending",
        "_pings",
        "_pongs",
        "_proto",
        "_reading",
        "_send_lock",
        "_stream",
        "_text_parts",
        "close_code",
        "close_reason",
        "last_received_at",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        proto: _Protocol,
        *,
        max_message_chars: int,
        received: bytes = b"",
    ) -> None:
        """``received``: bytes already read from ``stream`` after the handshake."""
        self._stream = stream
        self._proto = proto
        self._max_message_chars = max_message_chars
        self._send_lock = trio.StrictFIFOLock()
        self._pending: deque[str | bytes] = deque()
        self._text_parts: list[str] = []
        self._bytes_parts: list[bytes] = []
        """The parts of the message being received (one of the two lists is used)."""
        self._message_chars = 0
        self._pings = itertools.count()
        self._pongs: dict[bytes, trio.Event] = {}
        self.close_code: int | None = None
        """Set once the connection is closed: the peer's code, ours, or 1006 (no close frame)."""
        self.close_reason = ""
        self._reading = False
        """A task is in :meth:`receive`: only it may read the stream."""
        self._closed_event = trio.Event()
        self.last_received_at = trio.current_time()
        """Trio time bytes last came from the peer (the heartbeat pings only a quiet peer)."""
        if received:
            self._proto.receive_data(received)

    @property
    def is_open(self) -> bool:
        return self._proto.state is ConnectionState.OPEN

    # -- receiving ------------------------------------------------------------------------

    async def receive(self) -> str | bytes | None:
        """The next message, or ``None`` once the connection is closed (see
        :attr:`close_code`). Pings are answered and the peer's close is replied to here."""
        while not self._pending:
            await self._handle_events()
            if self._pending:
                break
            if self._proto.state is ConnectionState.CLOSED:
                return None
            # Open, or closing on our side: read on (the peer's close reply ends it).
            self._reading = True
            try:
                data = bytes(await self._stream.receive_some(RECEIVE_BYTES))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            finally:
                self._reading = False
            self.last_received_at = trio.current_time()
            # b"" is the end of the stream: wsproto then reports a close with 1006.
            self._proto.receive_data(data or None)
        return self._pending.popleft()

    async def _handle_events(self) -> None:
        reply = bytearray()
        for event in self._proto.events():
            match event:
                case TextMessage() | BytesMessage():
                    if not self._take_part(event):
                        reply += self._close_frame(CloseReason.MESSAGE_TOO_BIG, "message too big")
                        break
                case Ping():
                    if self._proto.state is ConnectionState.OPEN:
                        reply += self._proto.send(event.response())
                case Pong():
                    waiter = self._pongs.pop(bytes(event.payload), None)
                    if waiter is not None:
                        waiter.set()
                case CloseConnection():
                    if self._proto.state is ConnectionState.REMOTE_CLOSING:
                        reply += self._proto.send(event.response())
                    elif self._proto.state is ConnectionState.OPEN:
                        # Not the peer's close: wsproto found the peer broke the protocol
                        # (1007 text that is not UTF-8, 1002 a bad frame). The close frame,
                        # with that code, is ours to send.
                        reply += self._close_frame(event.code, event.reason or "")
                    self._closed(event.code, event.reason or "")
        if reply:
            await self._write(bytes(reply))

    def _take_part(self, event: TextMessage | BytesMessage) -> bool:
        """Add a part of a message; ``False`` if it makes the message too big."""
        self._message_chars += len(event.data)
        if self._message_chars > self._max_message_chars:
            self._text_parts.clear()
            self._bytes_parts.clear()
            return False
        if isinstance(event, TextMessage):
            self._text_parts.append(event.data)
        else:
            self._bytes_parts.append(bytes(event.data))
        if event.message_finished:
            self._message_chars = 0
            if isinstance(event, TextMessage):
                parts, self._text_parts = self._text_parts, []
                self._pending.append(parts[0] if len(parts) == 1 else "".join(parts))
            else:
                chunks, self._bytes_parts = self._bytes_parts, []
                self._pending.append(b"".join(chunks))
        return True

    def _close_frame(self, code: int, reason: str) -> bytes:
        if self._proto.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return b""
        frame = self._proto.send(CloseConnection(code=code, reason=reason))
        self._closed(code, reason)
        return frame

    def _closed(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        if self._proto.state is ConnectionState.CLOSED:
            self._closed_event.set()
        for waiter in self._pongs.values():
            waiter.set()
        self._pongs.clear()

    # -- sending --------------------------------------------------------------------------

    async def send_texts(self, texts: list[str]) -> None:
        """Send text messages, in order, in one write.

        Raises:
            WebSocketClosed: the connection is closed or closing.
        """
        if self._proto.state is not ConnectionState.OPEN:
            raise WebSocketClosed(self.close_code or 1006, self.close_reason)
        data = b"".join(self._proto.send(TextMessage(data=text)) for text in texts)
        await self._write(data)
        if self.close_code is not None:
            raise WebSocketClosed(self.close_code, self.close_reason)

    async def ping(self) -> None:
        """Wait for the peer's pong (the task reading the connection delivers it).

        Raises:
            WebSocketClosed: the connection closed before the pong came.
        """
        if self._proto.state is not ConnectionState.OPEN:
            raise WebSocketClosed(self.close_code or 1006, self.close_reason)
        payload = str(next(self._pings)).encode()
        waiter = self._pongs[payload] = trio.Event()
        await self._write(self._proto.send(Ping(payload=payload)))
        await waiter.wait()
        if self.close_code is not None:
            raise WebSocketClosed(self.close_code, self.close_reason)

    async def _write(self, data: bytes) -> None:
        # Several tasks write (the TX writer, a barge-in, the reader's pongs): one at a time.
        # The lock is taken without a checkpoint when it is free, the usual case.
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed(CloseReason.ABNORMAL_CLOSURE, "")
        finally:
            self._send_lock.release()

    # -- closing --------------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close handshake (wait for the peer's reply, bounded by the caller's cancel scope),
        then the stream, which is closed even if this is cancelled. If another task is
        reading, that task sees the reply; this one waits for it."""
        try:
            if self._proto.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                await self._write(self._close_frame(code, reason[:120]))
            if self._reading:
                await self._closed_event.wait()
            while self._proto.state is ConnectionState.LOCAL_CLOSING:
                try:
                    data = bytes(await self._stream.receive_some(RECEIVE_BYTES))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not data:
                    break
                self._proto.receive_data(data)
                # Only the close reply matters now: reading the events is what lets wsproto
                # see it and move to CLOSED.
                for _ in self._proto.events():
                    pass
        finally:
            await trio.aclose_forcefully(self._stream)
