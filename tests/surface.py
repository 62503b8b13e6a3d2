"""The rig of the surface fuzz suite: a bridge in its own process, reached the way the
outside reaches it, over loopback sockets, from plain blocking code that hypothesis drives.

* :class:`BridgeProcess`: ``python -m tests.bridge_process bridge`` (what ``bridge serve``
  runs) on the simulated upstream in a process of its own, JSON logs captured to a file,
  its RSS read from ``/proc``.
* :func:`http_exchange`: raw bytes in, the parsed first response out.
* :class:`SyncWebSocket`: a small wsproto client that can also write frames no library
  would (invalid UTF-8, a frame header announcing hundreds of megabytes).
* :class:`NormalCalls`: simulated Twilio calls placed back to back, in a thread with its own
  Trio run, for as long as the fuzzing lasts: each must complete as a normal call does.
* :func:`fuzz_settings`: hypothesis settings of the quick size (``make test``) or the full
  size (``make fuzz``, ``BRIDGE_FUZZ=full``).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from hypothesis import HealthCheck, settings
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
)
from wsproto.utilities import LocalProtocolError

from bridge.core.signature import compute_signature
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.report import CallerReport
from bridge.sim.script import script_from_name
from tests.rawhttp import RawResponse, parse_response

REPO = Path(__file__).parent.parent
AUTH_TOKEN = "fuzz-auth-token"
CONTROL_TOKEN = "fuzz-control-token-0123456789abcdef"
FULL = os.environ.get("BRIDGE_FUZZ") == "full"


def fuzz_settings(*, quick: int, full: int) -> settings:
    """``quick`` examples in ``make test``, ``full`` in ``make fuzz``; no per-example deadline
    (real sockets), and no health check against slow data generation."""
    return settings(
        max_examples=full if FULL else quick,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak) of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field_name:
            return int(value.split()[0])
    raise LookupError(field_name)


class BridgeProcess:
    """The bridge under test, in its own process; its log lines are JSON records."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "tests.bridge_process", "sim"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.sim.stdout is not None
        sim_url = self.sim.stdout.readline().strip()
        env = {
            **os.environ,
            "BRIDGE_HOST": "127.0.0.1",
            "BRIDGE_PORT": "0",
            "BRIDGE_LOG_FORMAT": "json",
            "BRIDGE_LOG_LEVEL": "INFO",
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "BRIDGE_CONTROL_TOKEN": CONTROL_TOKEN,
            "OPENAI_REALTIME_URL": sim_url,
        }
        for name in ("OPENAI_API_KEY", "TWILIO_ACCOUNT_SID"):
            env.pop(name, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.bridge_process", "bridge"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._ready = threading.Event()
        self.port = 0
        self._copier = threading.Thread(target=self._copy_log, daemon=True)
        self._copier.start()
        if not self._ready.wait(30):
            self.stop()
            raise RuntimeError(f"the bridge did not start; see {log_path}")

    def _copy_log(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr as pipe, self.log_path.open("wb") as log:
            for line in pipe:
                log.write(line)
                log.flush()
                if not self._ready.is_set() and b"BRIDGE_READY" in line:
                    record = json.loads(line)["record"]
                    self.port = int(record["extra"]["record"]["port"])
                    self._ready.set()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_kib(self, field_name: str = "VmRSS") -> int:
        return rss_kib(self.process.pid, field_name)

    def stop(self) -> int:
        """SIGTERM (the drain), then the exit status; the simulator goes too."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(30)
            self._copier.join(10)
        finally:
            self.sim.terminate()
            self.sim.wait(10)
            assert self.sim.stdout is not None
            self.sim.stdout.close()
        return status

    def records(self) -> list[dict[str, Any]]:
        """Every log record so far (the JSON lines of the log file)."""
        lines = self.log_path.read_bytes().splitlines()
        return [json.loads(line)["record"] for line in lines if line.startswith(b"{")]

    @property
    def media_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/twilio/media"

    @property
    def signed_media_url(self) -> str:
        """What the bridge expects Twilio to sign (no public URL: from the Host header)."""
        return f"wss://127.0.0.1:{self.port}/twilio/media"


def http_exchange(
    port: int, data: bytes, *, timeout_s: float = 10.0, to_head: bool = False
) -> RawResponse | None:
    """Send ``data``, shut our side, read until the bridge closes; the first response
    (``to_head``: of a ``HEAD``, see :func:`tests.rawhttp.parse_response`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        received = bytearray()
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                received += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while still writing: the answer, if any, came first
        except OSError as closed:
            if closed.errno != errno.ENOTCONN:  # the bridge was done with us before the shutdown
                raise
        return parse_response(bytes(received), to_head=to_head)


@dataclass
class Close:
    code: int
    reason: str


class SyncWebSocket:
    """A blocking WebSocket client; frames from the bridge are read and dropped."""

    def __init__(self, sock: socket.socket, conn: WSConnection) -> None:
        self.sock = sock
        self.conn = conn

    @classmethod
    def open(
        cls,
        port: int,
        *,
        target: str = "/twilio/media",
        headers: list[tuple[bytes, bytes]] | None = None,
        timeout_s: float = 5.0,
    ) -> tuple[int, SyncWebSocket | None]:
        """(HTTP status, the socket if it was accepted: 101)."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        conn = WSConnection(ConnectionType.CLIENT)
        host = f"127.0.0.1:{port}"
        try:
            sock.sendall(conn.send(Request(host=host, target=target, extra_headers=headers or [])))
            while data := sock.recv(65536):
                conn.receive_data(data)
                for event in conn.events():
                    if isinstance(event, AcceptConnection):
                        return 101, cls(sock, conn)
                    if isinstance(event, RejectConnection):
                        return event.status_code, None
            return 0, None
        finally:
            if conn.state is not ConnectionState.OPEN:
                sock.close()

    def __enter__(self) -> SyncWebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    @staticmethod
    def signed_headers(bridge: BridgeProcess) -> list[tuple[bytes, bytes]]:
        signature = compute_signature(AUTH_TOKEN, bridge.signed_media_url)
        return [(b"x-twilio-signature", signature.encode())]

    def send_frame(self, message: str | bytes, count: int = 1) -> bool:
        """``message``, ``count`` times in one write; ``False`` once the bridge is gone."""
        try:
            frame = self.conn.send(Message(data=message))
        except LocalProtocolError:
            return False  # wsproto saw the bridge's close
        return self._write(frame * count)

    def send_invalid_utf8(self) -> bool:
        """A masked text frame whose payload is not UTF-8 (mask 0: the payload as is)."""
        payload = b"\xff\xfe not utf-8"
        return self._write(bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)

    def send_huge(self, size: int, *, binary: bool) -> int:
        """One frame announcing ``size`` bytes, written until the bridge stops reading;
        bytes written. Nothing of it is held here: 1 MiB chunks of ``a``."""
        header = bytes([0x82 if binary else 0x81, 0x80 | 127]) + struct.pack("!Q", size)
        chunk = b"a" * 2**20
        sent = 0
        if not self._write(header + b"\0\0\0\0"):
            return 0
        while sent < size:
            if not self._write(chunk[: min(len(chunk), size - sent)]):
                break
            sent += min(len(chunk), size - sent)
        return sent

    def _write(self, data: bytes) -> bool:
        """``False`` once the bridge has closed or reset the connection."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return False
        return True

    def wait_close(self, timeout_s: float) -> Close | None:
        """The bridge's close (replied to), 1006 if TCP ended without one, ``None`` if
        nothing came within ``timeout_s``."""
        self.sock.settimeout(timeout_s)
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            except ConnectionResetError:
                return Close(1006, "")
            self.conn.receive_data(data or None)
            for event in self.conn.events():
                if isinstance(event, CloseConnection):
                    with contextlib.suppress(LocalProtocolError):  # ours was first
                        self._write(self.conn.send(event.response()))
                    return Close(event.code, event.reason or "")
                if isinstance(event, Ping):
                    self._write(self.conn.send(event.response()))
                # Anything else (the bridge's media and marks) is dropped.
            if not data:
                return Close(1006, "")

    def close(self, code: int = 1000) -> Close | None:
        """Start the close handshake; the bridge's reply (or ``None``)."""
        try:
            self._write(self.conn.send(CloseConnection(code=code)))
        except LocalProtocolError:
            return None  # the bridge closed first
        return self.wait_close(5.0)


@dataclass
class NormalCalls:
    """Normal simulated calls, one after the other, until :meth:`finish`."""

    bridge: BridgeProcess
    script: str = "talk"
    reports: list[CallerReport] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    current_call_sid: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=trio.run, args=(self._calls,), daemon=True)
        self._thread.start()

    async def _calls(self) -> None:
        while not self._stop.is_set():
            options = CallerOptions(
                url=self.bridge.media_url,
                script=script_from_name(self.script),
                auth_token=AUTH_TOKEN,
                signature_url=self.bridge.signed_media_url,
            )
            self.current_call_sid = options.call_sid
            try:
                with trio.fail_after(60):
                    self.reports.append(await SimCaller(options).run())
            except Exception as failure:  # noqa: BLE001 - recorded, asserted by the suite
                self.failures.append(repr(failure))

    def finish(self) -> None:
        """Let the call in progress end, place no more."""
        self._stop.set()
        assert self._thread is not None
        self._thread.join(90)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
