"""A TCP stream that knows when the kernel received what it returned.

The simulated caller stands in for Twilio. Twilio starts to play a frame when the frame
reaches its socket, not when a Python task gets round to reading it, so a benchmark that
stamps bridge messages at read time adds its own event loop's lag to the bridge's figures.
This stream turns on the kernel's receive timestamps (``SO_TIMESTAMPNS``) and reads with
``recvmsg``; for TCP the kernel reports, with each read, when the newest segment it copied
arrived (Linux ``tcp_recv_timestamp``). A message is therefore stamped no earlier than its
last byte arrived and no later than it was read.

Linux stamps arriving packets only while some socket on the machine asks for stamps, and
starts a moment (up to milliseconds) after the first one asks; a packet that came in
unstamped is stamped when it is read. :func:`kernel_stamping` keeps stamping on across a
run, so the first messages of each connection are stamped too.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Final

import trio

SO_TIMESTAMPNS: Final = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux's value (``SO_TIMESTAMPNS_OLD``, 64-bit ``timespec``); Python's socket module does
not name it."""
_TIMESPEC: Final = struct.Struct("@qq")
_ANCILLARY_BYTES: Final = socket.CMSG_SPACE(_TIMESPEC.size)
_RECEIVE_BYTES: Final = 65536
"""trio's own ``DEFAULT_RECEIVE_SIZE``."""


class ArrivalStampedStream(trio.abc.Stream):
    """``stream`` with the kernel receive time of the bytes it last returned.

    Reads go to the socket's ``recvmsg``, writes straight to its descriptor; closing goes to
    ``stream``.
    Socket errors become trio's stream errors, as :class:`trio.SocketStream` raises them.
    Raises :class:`OSError` at construction when the platform has no ``SO_TIMESTAMPNS``.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._socket = stream.socket
        self._socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._last_arrival_ns: int | None = None

    def arrival(self, now: float) -> float:
        """When the newest bytes read so far reached the socket, on the clock that reads
        ``now`` at this moment (s; it must tick at wall rate). ``now`` itself before the
        first stamped read."""
        if self._last_arrival_ns is None:
            return now
        age_s = (time.time_ns() - self._last_arrival_ns) / 1e9
        return now - max(0.0, age_s)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = _RECEIVE_BYTES if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        with _stream_errors():
            data, ancillary, _, _ = await self._socket.recvmsg(size, _ANCILLARY_BYTES)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
                self._last_arrival_ns = seconds * 1_000_000_000 + nanoseconds
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Straight to the socket, waiting only while the kernel's buffer is full, as the
        bridge's own WebSocket writes: trio's ``send_all`` would yield after every write,
        and these streams carry a whole bench's traffic in one process."""
        view = memoryview(data)
        while view:
            fd = self._socket.fileno()
            if fd < 0:
                raise trio.ClosedResourceError("this socket was already closed")
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(fd)
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


@contextmanager
def _stream_errors() -> Iterator[None]:
    """Socket errors as :class:`trio.SocketStream` reports them."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise trio.ClosedResourceError("this socket was already closed") from None
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc


STAMPING_TIMEOUT_S: Final = 1.0
_PROBE_GAP_S: Final = 0.002
"""How long a probe datagram waits before it is read: a stamp this much older than the
read is the kernel's, not the read's."""


@asynccontextmanager
async def kernel_stamping() -> AsyncIterator[bool]:
    """Keep the kernel's receive stamping on while inside; yields whether it was seen to
    work within :data:`STAMPING_TIMEOUT_S` (a few ms, normally; the probes wait on trio's
    clock, so other tasks run meanwhile).

    It holds a loopback UDP socket that asks for stamps, and probes it with datagrams
    until one is stamped before it was read. Raises :class:`OSError` if loopback UDP is
    unavailable.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        held.bind(("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as prober:
            working = False
            with trio.move_on_after(STAMPING_TIMEOUT_S):
                while not working:
                    prober.sendto(b"?", held.getsockname())
                    await trio.sleep(_PROBE_GAP_S)
                    _, ancillary, _, _ = held.recvmsg(1, _ANCILLARY_BYTES)
                    read_ns = time.time_ns()
                    for level, kind, payload in ancillary:
                        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                            seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
                            age_ns = read_ns - (seconds * 1_000_000_000 + nanoseconds)
                            working = age_ns >= _PROBE_GAP_S * 0.75 * 1e9
        yield working
