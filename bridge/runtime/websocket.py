"""One WebSocket over a Trio stream, framed by websockets' sans-IO protocol and read by the
task that owns it.

Both legs of a call use it: the Twilio media stream (server side, after
:mod:`bridge.runtime.http` accepted the upgrade) and the Realtime connection (client side,
:mod:`bridge.runtime.upstream`). There is no reader task and no message queue inside: the
call's reader task calls :meth:`WebSocket.receive`, which reads the socket, and answers
pings and closes on the way. Each message costs one wake-up of that task instead of the
three a server library's reader task, its queue and our reader would cost
(``ws-stack-costs``: most of the CPU of a paced message is Trio wake-ups), and
:meth:`WebSocket.send_texts` writes several messages in one write.

On a plain TCP stream (both legs in the bench, the Twilio leg behind a TLS proxy) the bytes
go through the socket's file descriptor, with Trio's ``wait_readable``/``wait_writable``
for the waiting: ``SocketStream`` tries a read before it waits (half the reads of a paced
stream fail), wraps each call in context managers and yields after a write that did not
need to wait, which together were a sixth of the bridge's CPU at 20 calls. TLS streams use
``receive_some``/``send_all``.

The framing is ``websockets.protocol.Protocol`` (sans-IO, masking in C), with
:mod:`bridge.runtime.wsframes` cutting out and making the common frames (a whole message in
one data frame) itself, at a fraction of the cost: control frames, fragments and anything
broken still go through websockets, which applies RFC 6455 as before.

Limits: a message longer than the protocol's ``max_size`` (bytes) is refused from its
header (nothing of it is kept) and the connection is closed with 1009. A text message that
is not UTF-8 closes it with 1007; any other protocol violation by the peer with the code
websockets gives (1002 for a bad frame).

Failure modes: :meth:`receive` returns ``None`` once the connection is closed, by either
side or by the network (then :attr:`close_code` is 1006); :meth:`send_texts` and
:meth:`ping` raise :class:`WebSocketClosed`. Nothing here raises on a peer that merely
vanishes, so the owner decides what a close means.
"""

from __future__ import annotations

import itertools
import logging
import os
import select
from collections import deque
from collections.abc import Iterable

import trio
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Protocol, Side, State

from bridge.runtime import wsframes

RECEIVE_BYTES = 65536
"""One read takes up to this much: a burst of frames is parsed after a single wake-up."""

PROTOCOL_LOG = logging.getLogger("bridge.websocket")
"""websockets' protocol objects log through the standard library; the bridge reports a
connection's end itself (with the call's ids), so their lines go nowhere."""
PROTOCOL_LOG.addHandler(logging.NullHandler())
PROTOCOL_LOG.propagate = False
PROTOCOL_LOG.setLevel(logging.CRITICAL + 1)


def server_protocol(max_message_bytes: int) -> Protocol:
    """The framing of an accepted upgrade (the handshake was answered already)."""
    return Protocol(Side.SERVER, state=State.OPEN, max_size=max_message_bytes, logger=PROTOCOL_LOG)


class WebSocketClosed(Exception):
    """The connection is closed (or closing): nothing more can be sent."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"WebSocket closed with {code}" + (f" {reason}" if reason else ""))
        self.code = code
        self.reason = reason


class WebSocket:
    __slots__ = (
        "_closed_event",
        "_failed",
        "_frame_maker",
        "_inbound",
        "_message_is_text",
        "_parts",
        "_pending",
        "_pings",
        "_pongs",
        "_proto",
        "_reading",
        "_scanning",
        "_send_lock",
        "_socket",
        "_stream",
        "_tcp_socket",
        "close_code",
        "close_reason",
        "last_received_at",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        proto: Protocol,
        *,
        received: bytes = b"",
    ) -> None:
        """``proto`` is open (its handshake done) and has been given no byte after its
        handshake; ``received``: bytes already read from ``stream`` after the handshake."""
        self._stream = stream
        # Found once: send_fd is asked for every caller frame, and isinstance against
        # Trio's stream classes there was about 1 % of the bridge's CPU (py-spy, 20 calls).
        self._socket = _socket_under(stream, through_tls=True)
        """The socket under the stream, TLS or not (``None``: no socket under it)."""
        self._tcp_socket = _socket_under(stream, through_tls=False)
        """The socket, for a plain TCP stream only: then we read and write it directly."""
        self._proto = proto
        self._send_lock = trio.StrictFIFOLock()
        self._pending: deque[str | bytes] = deque()
        self._parts: list[bytes] = []
        """The parts of the message being received."""
        self._message_is_text = False
        self._pings = itertools.count()
        self._pongs: dict[bytes, trio.Event] = {}
        self.close_code: int | None = None
        """Set once the connection is closed: the peer's code, ours, or 1006 (no close frame)."""
        self.close_reason = ""
        self._reading = False
        """A task is in :meth:`receive`: only it may read the stream."""
        self._failed = False
        """The peer broke the protocol: our close is sent and nothing more is read (RFC
        6455, 7.1.7; websockets discards the rest, the peer's close reply included)."""
        self._closed_event = trio.Event()
        self.last_received_at = trio.current_time()
        """Trio time bytes last came from the peer (the heartbeat pings only a quiet peer)."""
        self._frame_maker = wsframes.FrameMaker(masks=proto.side is Side.CLIENT)
        self._inbound = b""
        """Bytes read and not yet parsed while scanning: the start of a frame not yet whole."""
        self._scanning = not proto.reader.buffer and not proto.extensions
        """Frames are cut out by :func:`bridge.runtime.wsframes.scan` until one that only
        websockets may take comes (a fragment, a broken frame, a close): from there on,
        websockets parses every byte."""
        if received:
            self._receive_bytes(received)

    @property
    def is_open(self) -> bool:
        return self._proto.state is State.OPEN

    @property
    def has_pending(self) -> bool:
        """Messages already read from the socket wait for :meth:`receive`."""
        return bool(self._pending)

    def send_fd(self) -> int | None:
        """The descriptor of the socket under the stream (TLS or not) when nothing but the
        kernel could make a send wait now: the connection is open and no other task is
        sending. ``None`` otherwise, and for a stream with no socket under it or whose
        socket is closed. Whether the kernel takes bytes is :class:`WritableCheck`'s to ask
        (one ``poll`` system call, which can ask for several sockets at once).

        A TLS stream still yields to the scheduler on a write, and may in rare cases (a key
        update) have to read before it can write: then the write waits like any other."""
        if self._send_lock.locked() or self._proto.state is not State.OPEN:
            return None
        return _open_fd(self._socket)

    @property
    def _finished(self) -> bool:
        """Nothing more will come: the peer's close arrived, the protocol failed (ours was
        sent), or the stream ended."""
        proto = self._proto
        return self._failed or proto.close_rcvd is not None or proto.state is State.CLOSED

    # -- receiving ------------------------------------------------------------------------

    @property
    def stream(self) -> trio.abc.Stream:
        """The stream this connection reads and writes."""
        return self._stream

    async def receive(self) -> str | bytes | None:
        """The next message, or ``None`` once the connection is closed (see
        :attr:`close_code`). Pings are answered and the peer's close is replied to here."""
        proto = self._proto
        while not self._pending:
            self._take(proto.events_received())
            await self._flush()
            if self._pending:
                break
            if self._finished:
                self._closed(CloseCode.ABNORMAL_CLOSURE, "")
                return None
            # Open, or closing on our side: read on (the peer's close reply ends it).
            self._reading = True
            try:
                data = await self._read()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            finally:
                self._reading = False
            self.last_received_at = trio.current_time()
            if data:
                self._receive_bytes(data)
            else:
                self._receive_eof()
            if proto.parser_exc is not None:
                # The peer broke the protocol, sent too much, or the stream ended:
                # websockets queued our close with its code (none for an ended stream).
                self._failed = True
                sent = proto.close_sent
                if sent is not None:
                    self._closed(sent.code, sent.reason)
        return self._pending.popleft()

    def _receive_bytes(self, data: bytes) -> None:
        """Bytes read from the stream: the messages of whole data frames go to the pending
        queue here, anything else to websockets (see :mod:`bridge.runtime.wsframes`)."""
        proto = self._proto
        if not self._scanning:
            proto.receive_data(data)
            return
        unparsed = self._inbound + data if self._inbound else data
        peer_masks = proto.side is Side.SERVER
        while True:
            messages, stop, why, control_end = wsframes.scan(
                unparsed, peer_masks=peer_masks, max_size=proto.max_message_size
            )
            for is_text, payload in messages:
                self._message(is_text, payload)
                if self._failed:
                    self._inbound = b""
                    return
            rest = unparsed[stop:]
            match why:
                case wsframes.Stop.MORE:
                    self._inbound = rest
                    return
                case wsframes.Stop.CONTROL:
                    proto.receive_data(unparsed[stop:control_end])
                    self._take(proto.events_received())
                    unparsed = unparsed[control_end:]
                    if proto.state is State.OPEN and proto.parser_exc is None:
                        continue
                    # A close or a failure: what follows is websockets' (it discards it).
                    rest = unparsed
            self._inbound = rest
            self._stop_scanning()
            return

    def _receive_eof(self) -> None:
        """The stream ended: websockets judges what was cut short (1006 mid-frame)."""
        self._stop_scanning()
        self._proto.receive_eof()

    def _stop_scanning(self) -> None:
        """Give websockets every byte from here on, starting with those still held."""
        inbound, self._inbound = self._inbound, b""
        self._scanning = False
        if inbound:
            self._proto.receive_data(inbound)

    def _take(self, events: Iterable[object]) -> None:
        """The frames websockets parsed: control frames, and, once it parses every byte,
        data frames (after the handshake it parses nothing else)."""
        for frame in events:
            if not isinstance(frame, Frame):
                continue
            match frame.opcode:
                case Opcode.TEXT | Opcode.BINARY:
                    self._message_is_text = frame.opcode is Opcode.TEXT
                    self._parts = [bytes(frame.data)]
                    if frame.fin:
                        self._finish_message()
                case Opcode.CONT:
                    self._parts.append(bytes(frame.data))
                    if frame.fin:
                        self._finish_message()
                case Opcode.PONG:
                    waiter = self._pongs.pop(bytes(frame.data), None)
                    if waiter is not None:
                        waiter.set()
                case Opcode.CLOSE:
                    # websockets queued the reply (to the peer's close) already.
                    close = self._proto.close_rcvd
                    if close is not None:
                        self._closed(close.code, close.reason)
                case _:
                    pass  # a ping: websockets queued the pong
            if self._failed or self.close_code is not None:
                return

    def _finish_message(self) -> None:
        parts, self._parts = self._parts, []
        self._message(self._message_is_text, parts[0] if len(parts) == 1 else b"".join(parts))

    def _message(self, is_text: bool, payload: bytes) -> None:
        """A whole message: queued, or, for text that is not UTF-8, the connection failed
        with 1007."""
        if not is_text:
            self._pending.append(payload)
            return
        try:
            self._pending.append(payload.decode())
        except UnicodeDecodeError as exc:
            reason = f"{exc.reason} at position {exc.start}"
            self._proto.fail(CloseCode.INVALID_DATA, reason)
            self._failed = True
            self._closed(CloseCode.INVALID_DATA, reason)

    def _closed(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        if self._finished:
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
        proto = self._proto
        if proto.state is not State.OPEN:
            raise WebSocketClosed(self.close_code or CloseCode.ABNORMAL_CLOSURE, self.close_reason)
        maker = self._frame_maker
        await self._flush([maker.text(text.encode()) for text in texts])
        if self.close_code is not None:
            raise WebSocketClosed(self.close_code, self.close_reason)

    async def ping(self) -> None:
        """Wait for the peer's pong (the task reading the connection delivers it).

        Raises:
            WebSocketClosed: the connection closed before the pong came.
        """
        if self._proto.state is not State.OPEN:
            raise WebSocketClosed(self.close_code or CloseCode.ABNORMAL_CLOSURE, self.close_reason)
        payload = str(next(self._pings)).encode()
        waiter = self._pongs[payload] = trio.Event()
        self._proto.send_ping(payload)
        await self._flush()
        await waiter.wait()
        if self.close_code is not None:
            raise WebSocketClosed(self.close_code, self.close_reason)

    async def _flush(self, frames: Iterable[bytes] = ()) -> None:
        """Write what the protocol has queued (frames, pongs, close replies), then
        ``frames``, in order.

        The bytes are taken before the lock without a checkpoint in between, and the lock
        is FIFO, so writes leave in the order their frames were made. The end-of-stream
        marker websockets adds after a close is left to :meth:`aclose`."""
        data = b"".join((*self._proto.data_to_send(), *frames))
        if not data:
            return
        # Several tasks write (the TX writer, a barge-in, the reader's pongs): one at a time.
        # The lock is taken without a checkpoint when it is free, the usual case.
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()
        try:
            await self._write(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed(CloseCode.ABNORMAL_CLOSURE, "")
        finally:
            self._send_lock.release()

    # -- the stream -----------------------------------------------------------------------

    def _fd(self) -> int | None:
        """The socket's descriptor, for a plain TCP stream that is still open (read at each
        use: a closed socket reports -1, never a number reused since)."""
        return _open_fd(self._tcp_socket)

    async def _read(self) -> bytes:
        """Up to :data:`RECEIVE_BYTES` bytes; ``b""`` at the end of the stream.

        Raises:
            trio.BrokenResourceError, trio.ClosedResourceError: as ``receive_some`` does.
        """
        fd = self._fd()
        if fd is None:
            return bytes(await self._stream.receive_some(RECEIVE_BYTES))
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                return os.read(fd, RECEIVE_BYTES)
            except BlockingIOError:
                continue  # woken without data: wait again
            except OSError as exc:
                raise trio.BrokenResourceError(f"read: {exc}") from exc

    async def _write(self, data: bytes) -> None:
        """All of ``data``, waiting only while the kernel's buffer is full.

        Raises:
            trio.BrokenResourceError, trio.ClosedResourceError: as ``send_all`` does.
        """
        fd = self._fd()
        if fd is None:
            await self._stream.send_all(data)
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(fd)
            except OSError as exc:
                raise trio.BrokenResourceError(f"write: {exc}") from exc

    # -- closing --------------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close handshake (wait for the peer's reply, bounded by the caller's cancel scope),
        then the stream, which is closed even if this is cancelled. If another task is
        reading, that task sees the reply; this one waits for it."""
        proto = self._proto
        try:
            if proto.state is State.OPEN:
                proto.send_close(code, reason[:120])
                self._closed(code, reason[:120])
                await self._flush()
            if self._reading:
                await self._closed_event.wait()
            else:
                self._stop_scanning()
            while not self._finished:
                try:
                    data = await self._read()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not data:
                    break
                # Only the close reply matters now: websockets sees it as the bytes arrive.
                proto.receive_data(data)
                proto.events_received()
        finally:
            self._closed_event.set()
            await trio.aclose_forcefully(self._stream)


class WritableCheck:
    """Whether sockets all take bytes now (poll writable), asked of the kernel in one
    ``poll`` system call that does not wait (under 1 µs). Descriptors are given at each
    check, read from live sockets (a closed one reports none), so a number reused since
    names the socket that holds it now."""

    __slots__ = ("_fds", "_poll")

    def __init__(self) -> None:
        self._poll = select.poll()
        self._fds: tuple[int, ...] = ()

    def all_take_bytes(self, fds: tuple[int, ...]) -> bool:
        if fds != self._fds:
            for fd in self._fds:
                self._poll.unregister(fd)
            for fd in fds:
                self._poll.register(fd, select.POLLOUT)
            self._fds = fds
        writable = 0
        for _, events in self._poll.poll(0):
            if events & select.POLLOUT:
                writable += 1
        return writable == len(fds)


def _socket_under(stream: trio.abc.Stream, *, through_tls: bool) -> trio.socket.SocketType | None:
    """The socket under ``stream`` (or under its TLS, if ``through_tls``), if there is one."""
    if through_tls and isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None


def _open_fd(sock: trio.socket.SocketType | None) -> int | None:
    """The descriptor of ``sock`` while it is open (read at each use: a closed socket
    reports -1, never a number reused since)."""
    if sock is None:
        return None
    fd = sock.fileno()
    return fd if fd >= 0 else None
