"""Embedded simulated OpenAI Realtime upstream (GA protocol), on the bridge's own WebSocket
server (:mod:`bridge.runtime.http`).

The bridge's demo, tests and benchmarks connect to it instead of ``api.openai.com``: no
network, no keys. The protocol logic is :mod:`bridge.sim.upstream_session` (sans-IO); this
module runs it per connection, paces it with the injectable clock, injects faults
(:mod:`bridge.sim.upstream_faults`) and records what went over the wire.

Handshake: any path; ``?model=`` is echoed in the session. With ``require_api_key`` set, a
missing or wrong ``Authorization: Bearer <key>`` is rejected with HTTP 401. A request with an
``OpenAI-Beta`` header is accepted, answered with the ``beta_api_shape_disabled`` error and
closed with 4000, as the service does since the beta shutdown.

Each connection runs two tasks: a reader that drains the socket into a bounded inbox, and a
driver that feeds the session logic and writes its events. An exception in either is caught
at the connection boundary, logged once, and the socket is closed with 1011; the server keeps
serving other sessions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final
from urllib.parse import parse_qs, urlsplit

import orjson
import trio
from loguru import logger

from bridge.runtime.http import HttpLimits, HttpRequest, HttpResponse, serve_http
from bridge.runtime.websocket import WebSocket, WebSocketClosed
from bridge.sim.arrival import ArrivalStampedStream
from bridge.sim.upstream_config import ProtocolError
from bridge.sim.upstream_conversation import (
    ConversationItem,
    JsonObj,
    ResponseRecord,
    TruncationRecord,
)
from bridge.sim.upstream_faults import Fault, FaultKind, FaultPlan
from bridge.sim.upstream_session import SessionSettings, UpstreamSession, decode_frame
from bridge.sim.upstream_tools import SimToolCall

INBOX_SIZE: Final = 16
MAX_MESSAGE_SIZE: Final = 16 * 2**20
"""Appends may carry up to 15 MiB of audio (base64) per event."""
CLOSE_TIMEOUT_S: Final = 2.0
MAX_PENDING_COMMANDS: Final = 16
BETA_ERROR: Final = ProtocolError(
    "beta_api_shape_disabled",
    "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.",
)


_SESSION_DEFAULTS: Final = SessionSettings()


@dataclass(frozen=True, slots=True)
class SimUpstreamOptions:
    """Options of the simulated upstream. Durations in ms (wall ms of ``clock`` unless said).

    ``generation_speed`` is audio ms generated per wall ms (4.0 = 4x real time). ``clock``
    returns seconds; it stamps every record and paces generation, so callers in the same
    process can compare times (``trio.current_time`` works with ``autojump_clock``).
    """

    host: str = "127.0.0.1"
    port: int = 0
    generation_speed: float = _SESSION_DEFAULTS.generation_speed
    delta_ms: int = _SESSION_DEFAULTS.delta_ms
    first_delta_delay_ms: float = _SESSION_DEFAULTS.first_delta_delay_ms
    late_deltas_after_cancel: int = _SESSION_DEFAULTS.late_deltas_after_cancel
    vad_onset_ms: int = _SESSION_DEFAULTS.vad_onset_ms
    """Input-audio ms of speech before ``speech_started`` is emitted."""
    reply_ms: int = _SESSION_DEFAULTS.reply_ms
    """Audio per output item (ms), unless a test set ``next_reply_ms``."""
    items_per_response: int = _SESSION_DEFAULTS.items_per_response
    caller_transcripts: tuple[str, ...] = _SESSION_DEFAULTS.caller_transcripts
    transcription_delay_ms: float = _SESSION_DEFAULTS.transcription_delay_ms
    truncate_no_audio_code: str | None = _SESSION_DEFAULTS.truncate_no_audio_code
    """UNCONFIRMED: real captures show ``unsupported_content_type`` and ``null``."""
    unknown_item_code: str | None = _SESSION_DEFAULTS.unknown_item_code
    """UNCONFIRMED: code of the error for an unknown ``item_id``."""
    require_api_key: str | None = None
    handshake_delay_ms: float = 0.0
    """Each WebSocket handshake waits this long before it is answered (a slow service)."""
    session_max_s: float | None = None
    """Close every session with 1001 and the service's cap message at this age, as the real
    service does at 60 minutes."""
    refuse_reconnects: int = 0
    """Answer this many handshakes after the first session's with HTTP 503 (a service that
    will not take the call back at once); ``refuse_next`` does the same at run time."""
    faults: FaultPlan = field(default_factory=FaultPlan)
    seed: int = _SESSION_DEFAULTS.seed
    tool_calls: tuple[SimToolCall, ...] = _SESSION_DEFAULTS.tool_calls
    """Scripted function calls: the reply to caller turn N calls a tool."""
    short_reply_ms: int = _SESSION_DEFAULTS.short_reply_ms
    clock: Callable[[], float] = trio.current_time
    stamp_arrivals: bool = False
    """Stamp each received message (``SimSession.received``) with when it reached this
    socket (the kernel's receive time), not when the session's task read it: the service
    takes audio in as it arrives, and a loaded sim reads late. ``clock`` must tick at wall
    rate (a real clock, not Trio's autojump)."""

    def session_settings(self) -> SessionSettings:
        """The per-session part of these options (same field names)."""
        return SessionSettings(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(SessionSettings)}
        )


@dataclass(frozen=True, slots=True)
class _Frame:
    t: float
    data: str | bytes


@dataclass(frozen=True, slots=True)
class _PeerClosed:
    code: int
    """The peer's close code, 1006 when TCP dropped without a close frame."""
    reason: str | None


_InboxItem = _Frame | _PeerClosed


@dataclass(slots=True, eq=False)
class SimSession:
    """Handle on one connection: observation records, runtime knobs and fault commands.

    ``received``/``sent`` hold ``(clock(), event)`` in order; ``sent`` is stamped right before
    the frame is written. Frames that are not JSON objects are recorded as ``{"_raw": text}``.
    ``frames_received``/``frames_sent`` hold the same frames as they went over the wire, index
    for index: what protocol checks read, since decoding hides duplicate keys, and a recorded
    event is an object, not the text, that can share parts with the session's later state.
    ``closed`` is set when the socket closed, by either side; ``close_code`` is the code we
    sent, or the peer's (1006 when TCP dropped without a close frame).
    """

    index: int
    path: str
    core: UpstreamSession
    opened_at: float
    received: list[tuple[float, JsonObj]] = field(default_factory=list)
    sent: list[tuple[float, JsonObj]] = field(default_factory=list)
    frames_received: list[str | bytes] = field(default_factory=list)
    frames_sent: list[str] = field(default_factory=list)
    closed: trio.Event = field(default_factory=trio.Event)
    close_code: int | None = None
    close_reason: str | None = None
    commands: deque[Fault] = field(default_factory=deque)
    """Fault commands not yet applied by the driver (bounded by :data:`MAX_PENDING_COMMANDS`)."""
    wake: trio.CancelScope | None = None
    """The driver's current wait, cancelled to make it look at ``commands``."""
    unstalled: trio.Event = field(default_factory=trio.Event)
    """Set except during a stall; the reader waits on it before each read."""

    @property
    def responses(self) -> dict[str, ResponseRecord]:
        return self.core.responses

    @property
    def truncations(self) -> list[TruncationRecord]:
        return self.core.truncations

    @property
    def speech_started(self) -> list[tuple[float, int]]:
        """``(clock() when sent, audio_start_ms)`` of every ``speech_started``."""
        return self.core.speech_started

    @property
    def conversation(self) -> list[ConversationItem]:
        """Every item in order, deleted ones included (``deleted=True``)."""
        return self.core.conversation.items

    @property
    def session(self) -> JsonObj:
        """The effective GA session config."""
        return self.core.session

    def next_reply_ms(self, ms: int) -> None:
        """Audio ms per item of the next response created (queued in call order)."""
        self.core.next_reply_ms(ms)

    def slow_replies(self, first_delta_delay_ms: float) -> None:
        """From now on, each response streams its first delta this long after it was
        created (a model that is slow to answer)."""
        self.core.settings = dataclasses.replace(
            self.core.settings, first_delta_delay_ms=first_delta_delay_ms
        )

    def push_caller_transcript(self, text: str) -> None:
        """Transcript of the next committed caller turn (before the scripted ones)."""
        self.core.push_caller_transcript(text)

    def command(self, fault: Fault) -> None:
        """Apply ``fault`` as soon as the driver runs (``at_ms`` is ignored).

        Raises ``RuntimeError`` once the session is closed or when
        :data:`MAX_PENDING_COMMANDS` are already pending (callers are tests: a full queue is
        a bug, not something to wait for).
        """
        if self.closed.is_set():
            raise RuntimeError(f"sim session {self.index} is closed")
        if len(self.commands) >= MAX_PENDING_COMMANDS:
            raise RuntimeError(f"sim session {self.index}: too many pending commands")
        self.commands.append(fault)
        if self.wake is not None:
            self.wake.cancel()

    def close(self, code: int = 1011, reason: str | None = None) -> None:
        """Close the socket with ``code`` (reason defaults by code, e.g. 1011, 1001)."""
        self.command(Fault(FaultKind.CLOSE, close_code=code, close_reason=reason))

    def send_malformed(self, *, no_type: bool = False) -> None:
        """Send a text frame that is not JSON, or with ``no_type`` a JSON object without type."""
        self.command(Fault(FaultKind.NO_TYPE if no_type else FaultKind.MALFORMED))

    def send_unknown_event(self) -> None:
        self.command(Fault(FaultKind.UNKNOWN_EVENT))

    def send_error(self, code: str | None, message: str) -> None:
        """Send an ``error`` event (``type: server_error``) with this code and message."""
        self.command(Fault(FaultKind.ERROR, error_code=code, error_message=message))

    def send_frames(self, frames: tuple[str, ...]) -> None:
        """Send these text frames as they are, in order (any content: fuzzed server events
        with wrong types or missing fields, text that is not JSON)."""
        self.command(Fault(FaultKind.FRAMES, frames=frames))

    def stall(self, duration_ms: int | None = None) -> None:
        """Stop sending and reading for ``duration_ms`` (``None``: until the server stops).

        Nothing reads the socket meanwhile, so pings go unanswered. Any later command
        (e.g. :meth:`close`) ends the stall.
        """
        self.command(Fault(FaultKind.STALL, duration_ms=duration_ms))


class SimUpstream:
    """The server. ``await nursery.start(sim.serve)`` returns its URL."""

    __slots__ = (
        "_reconnect_refusals",
        "_refusals",
        "_session_added",
        "_url",
        "options",
        "rejected_handshakes",
        "sessions",
    )

    def __init__(self, options: SimUpstreamOptions | None = None) -> None:
        self.options = options if options is not None else SimUpstreamOptions()
        self.sessions: list[SimSession] = []
        self.rejected_handshakes = 0
        self._refusals: deque[int] = deque()
        self._reconnect_refusals = self.options.refuse_reconnects
        self._url: str | None = None
        self._session_added = trio.Event()

    @property
    def url(self) -> str:
        """``ws://host:port/v1/realtime?model=gpt-realtime``; valid once ``serve`` started."""
        if self._url is None:
            raise RuntimeError("SimUpstream.serve() has not started")
        return self._url

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(url)`` once listening."""
        host = self.options.host
        limits = HttpLimits(max_ws_message_bytes=MAX_MESSAGE_SIZE)
        async with trio.open_nursery() as nursery:
            wrap = ArrivalStampedStream if self.options.stamp_arrivals else None
            serve = partial(serve_http, websocket_stream=wrap)
            _, port = await nursery.start(serve, self, host, self.options.port, limits)
            netloc = f"[{host}]" if ":" in host else host
            self._url = f"ws://{netloc}:{port}/v1/realtime?model=gpt-realtime"
            task_status.started(self._url)

    async def wait_for_session(self, index: int) -> SimSession:
        """The ``index``-th accepted session (0-based), waiting until it connects."""
        while len(self.sessions) <= index:
            await self._session_added.wait()
        return self.sessions[index]

    def _add_session(self, path: str) -> SimSession:
        query = parse_qs(urlsplit(path).query)
        core = UpstreamSession(
            self.options.session_settings(),
            session_index=len(self.sessions),
            model=query.get("model", ["gpt-realtime"])[0],
            unix_time=int(time.time()),
        )
        sim = SimSession(len(self.sessions), path, core, self.options.clock())
        sim.unstalled.set()
        self.sessions.append(sim)
        self._session_added.set()
        self._session_added = trio.Event()
        return sim

    # -- the server's app (bridge.runtime.http.HttpApp) -------------------------------------

    async def http(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(426, b"the Realtime API is a WebSocket\n")

    def refuse_next(self, handshakes: int, status: int = 503) -> None:
        """Answer the next ``handshakes`` WebSocket handshakes with HTTP ``status``."""
        self._refusals.extend([status] * handshakes)

    async def refuse_websocket(self, request: HttpRequest) -> HttpResponse | None:
        """401 for a missing or wrong key (when one is required), as the service answers;
        the refusals asked for by :meth:`refuse_next`."""
        await trio.sleep(self.options.handshake_delay_ms / 1000.0)
        if self.sessions and self._reconnect_refusals > 0:
            self._reconnect_refusals -= 1
            self._refusals.append(503)
        if self._refusals:
            self.rejected_handshakes += 1
            status = self._refusals.popleft()
            return HttpResponse(status, b'{"error": {"message": "Service unavailable"}}')
        key = self.options.require_api_key
        if key is None or request.header(b"authorization") == f"Bearer {key}".encode():
            return None
        self.rejected_handshakes += 1
        body = {
            "error": {
                "message": "Incorrect API key provided.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
                "param": None,
            }
        }
        return HttpResponse(401, json.dumps(body).encode(), "application/json")

    async def websocket(self, request: HttpRequest, ws: WebSocket) -> None:
        target = request.path + (f"?{request.query}" if request.query else "")
        sim = self._add_session(target)
        try:
            with logger.contextualize(sim_session=sim.index):
                logger.info("sim upstream: session {} opened on {}", sim.index, target)
                if request.header(b"openai-beta") is not None:
                    await self._send(ws, sim, [sim.core.error_event(BETA_ERROR)])
                    await self._close(ws, sim, 4000, None)
                else:
                    await self._run(ws, sim)
                logger.info("sim upstream: session {} closed ({})", sim.index, sim.close_code)
        # The per-connection boundary: one broken session must not take the server down.
        except Exception as exc:  # noqa: BLE001 (logged with traceback, socket closed 1011)
            logger.opt(exception=exc).error(
                "sim upstream: session failed ({!r}), closing with 1011", exc
            )
            if sim.close_code is None:
                sim.close_code, sim.close_reason = 1011, "sim internal error"
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                await ws.aclose(1011, "sim internal error")
        finally:
            sim.closed.set()

    async def _run(self, ws: WebSocket, sim: SimSession) -> None:
        # Policy when the inbox is full: the reader blocks, nothing reads the socket and TCP
        # pushes back on the client, as with a slow real server.
        inbox_send, inbox_recv = trio.open_memory_channel[_InboxItem](INBOX_SIZE)
        async with inbox_send, inbox_recv, trio.open_nursery() as nursery:
            nursery.start_soon(self._read, ws, sim, inbox_send.clone())
            try:
                await self._drive(ws, sim, inbox_recv)
            except WebSocketClosed as closed:
                # A send raced the peer's close.
                self._peer_closed(sim, _PeerClosed(closed.code, closed.reason or None))
            nursery.cancel_scope.cancel()

    def _peer_closed(self, sim: SimSession, closed: _PeerClosed) -> None:
        """Record the peer's close code (1006 when TCP dropped without a close frame)."""
        if sim.close_code is None:
            sim.close_code, sim.close_reason = closed.code, closed.reason

    async def _read(
        self, ws: WebSocket, sim: SimSession, inbox: trio.MemorySendChannel[_InboxItem]
    ) -> None:
        clock = self.options.clock
        arrivals = ws.stream if isinstance(ws.stream, ArrivalStampedStream) else None
        async with inbox:
            while True:
                # Stalled: nothing reads the socket, so pings go unanswered.
                await sim.unstalled.wait()
                data = await ws.receive()
                if data is None:
                    await inbox.send(_PeerClosed(ws.close_code or 1006, ws.close_reason or None))
                    return
                now = clock()
                await inbox.send(_Frame(now if arrivals is None else arrivals.arrival(now), data))

    async def _drive(
        self,
        ws: WebSocket,
        sim: SimSession,
        inbox: trio.MemoryReceiveChannel[_InboxItem],
    ) -> None:
        clock = self.options.clock
        faults = list(self.options.faults.faults)
        if self.options.session_max_s is not None:
            cap_ms = round(self.options.session_max_s * 1000)
            faults.append(Fault(FaultKind.CLOSE, at_ms=cap_ms, close_code=1001))
        planned = deque(sorted(faults, key=lambda f: f.at_ms or 0))
        await self._send(ws, sim, sim.core.open())
        while True:
            while sim.commands:
                if await self._apply(ws, sim, sim.commands.popleft()):
                    return
            now = clock()
            while planned and sim.opened_at + (planned[0].at_ms or 0) / 1000.0 <= now:
                if await self._apply(ws, sim, planned.popleft()):
                    return
            await self._send(ws, sim, sim.core.poll(clock()))
            deadlines = [sim.core.next_deadline()]
            if planned:
                deadlines.append(sim.opened_at + (planned[0].at_ms or 0) / 1000.0)
            due = min((d for d in deadlines if d is not None), default=math.inf)
            if sim.commands:
                # Given while we were sending: ``wake`` was not set then, so look again now.
                continue
            item: _InboxItem | None = None
            with trio.move_on_after(max(0.0, due - clock())) as scope:
                sim.wake = scope
                item = await inbox.receive()
            sim.wake = None
            if item is None:
                continue
            if isinstance(item, _PeerClosed):
                self._peer_closed(sim, item)
                return
            sim.frames_received.append(item.data)
            event = decode_frame(item.data)
            if event is None:
                raw = item.data if isinstance(item.data, str) else repr(item.data)
                sim.received.append((item.t, {"_raw": raw}))
                await self._send(ws, sim, sim.core.handle_undecodable())
                continue
            sim.received.append((item.t, event))
            await self._send(ws, sim, sim.core.handle(event, clock()))

    async def _send(self, ws: WebSocket, sim: SimSession, events: list[JsonObj]) -> None:
        clock = self.options.clock
        for event in events:
            # Stamped once serialised, as it is written: the records time the wire, not
            # this process's JSON encoding.
            text = orjson.dumps(event).decode()
            t = clock()
            sim.sent.append((t, event))
            sim.frames_sent.append(text)
            sim.core.on_sent(event, t)
            await ws.send_texts([text])
            # A write that did not wait does not yield: yield here, so that the bench's
            # callers (tasks of this process) read what the bridge sends back before this
            # session goes on, and their times measure the bridge, not this loop.
            await trio.lowlevel.checkpoint()

    async def _close(self, ws: WebSocket, sim: SimSession, code: int, reason: str | None) -> None:
        sim.close_code, sim.close_reason = code, reason
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            await ws.aclose(code, reason or "")
        sim.closed.set()

    async def _apply(self, ws: WebSocket, sim: SimSession, fault: Fault) -> bool:
        """Apply one fault; ``True`` when the session is over (closed)."""
        logger.info("sim upstream: session {} fault {}", sim.index, fault.kind.value)
        core = sim.core
        if fault.kind is FaultKind.CLOSE:
            await self._close(ws, sim, fault.close_code, fault.reason() or None)
            return True
        if fault.kind is FaultKind.MALFORMED:
            text = '{"type": "response.output_audio.delta", "delta": '
            sim.sent.append((self.options.clock(), {"_raw": text}))
            sim.frames_sent.append(text)
            await ws.send_texts([text])
        elif fault.kind is FaultKind.NO_TYPE:
            await self._send(ws, sim, [{"event_id": core.ids.new("event_"), "detail": "no type"}])
        elif fault.kind is FaultKind.UNKNOWN_EVENT:
            await self._send(ws, sim, [core.event("sim.unknown_event", detail="unknown type")])
        elif fault.kind is FaultKind.ERROR:
            err = ProtocolError(fault.error_code, fault.error_message, error_type="server_error")
            await self._send(ws, sim, [core.error_event(err)])
        elif fault.kind is FaultKind.FRAMES:
            for text in fault.frames:
                sim.sent.append((self.options.clock(), {"_raw": text}))
                sim.frames_sent.append(text)
                await ws.send_texts([text])
        else:
            await self._stall(sim, fault.duration_ms)
        return False

    async def _stall(self, sim: SimSession, duration_ms: int | None) -> None:
        sim.unstalled = trio.Event()
        timeout = math.inf if duration_ms is None else duration_ms / 1000.0
        with trio.move_on_after(timeout) as scope:
            sim.wake = scope
            await trio.sleep_forever()
        sim.wake = None
        sim.unstalled.set()


async def run_sim_upstream(options: SimUpstreamOptions) -> None:
    """Serve the simulated upstream until cancelled, logging its URL."""
    sim = SimUpstream(options)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(sim.serve)
        logger.info("simulated OpenAI Realtime upstream listening on {}", url)
