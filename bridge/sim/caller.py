"""The simulated caller: Twilio's side of a bidirectional ``<Connect><Stream>``.

A :class:`SimCaller` connects to the bridge's media WebSocket like Twilio does and:

* sends ``connected`` and ``start``, then one 160-byte ``media`` frame every 20 ms in
  real time (absolute deadlines on the Trio clock, so no drift), carrying the scripted
  caller speech (:mod:`bridge.sim.script`) over μ-law silence or optional line noise;
* plays what the bridge sends through :class:`~bridge.sim.playback.TwilioPlayback` and
  echoes each ``mark`` when playback reaches it (at once when nothing is buffered, and
  every pending mark on ``clear``);
* checks every bridge frame like Twilio does; bad frames are dropped and counted
  (warnings 31950/31951) instead of crashing the call;
* hangs up by sending ``stop`` and closing, or notes when the bridge closes first.

It is used by ``bridge call``, ``make demo``, integration tests (as the Twilio peer) and
benchmarks. :meth:`SimCaller.run` returns a :class:`~bridge.sim.report.CallerReport`.

Public names (re-exported from :mod:`bridge.sim.caller_options`, :mod:`bridge.sim.script`
and :mod:`bridge.sim.report`): :class:`CallerOptions`, :class:`SimCaller`,
:func:`run_call_cli`, :func:`call_failure`, :func:`script_from_name`, :class:`CallerScript`,
:class:`CallerReport`, :func:`format_timeline`, :class:`CallerConnectError`.

Failure modes: :class:`CallerConnectError` when the WebSocket cannot be opened (refused,
timed out, or rejected by the bridge, e.g. a 403 for a bad signature). Once connected,
a socket closed by the bridge ends the call normally and is recorded in the report.
"""

from __future__ import annotations

import math
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Final, Literal, TypeVar, cast

import numpy as np
import trio
from loguru import logger
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from bridge.audio import mulaw, synth, wavio
from bridge.core.signature import compute_signature
from bridge.sim import wire
from bridge.sim.arrival import ArrivalStampedStream
from bridge.sim.caller_options import CallerConnectError, CallerOptions, WsTarget, prepare_speech
from bridge.sim.playback import TIME_EPS_S, AiTurn, ClearResult, TwilioPlayback
from bridge.sim.report import (
    CallerReport,
    CallRecorder,
    CloseInfo,
    EventKind,
    WireCounters,
    format_timeline,
)
from bridge.sim.script import CallerScript, SpeechScheduler, script_from_name

__all__ = [
    "CallerConnectError",
    "CallerOptions",
    "CallerReport",
    "CallerScript",
    "SimCaller",
    "call_failure",
    "format_timeline",
    "run_call_cli",
    "script_from_name",
]

T = TypeVar("T")

FRAME_MS: Final = 20
FRAME_BYTES: Final = FRAME_MS * mulaw.BYTES_PER_MS
_FRAME_S: Final = FRAME_MS / 1000
_SILENT_FRAME: Final = mulaw.silence(FRAME_MS)
CONNECT_TIMEOUT_S: Final = 10.0
"""Bound on TCP connect, and separately on the WebSocket handshake."""
CLOSE_TIMEOUT_S: Final = 2.0
"""Bound on the close handshake after ``stop``."""
_LATE_FRAME_S: Final = 0.005
_NOISE_LOOP_MS: Final = 1000
"""Line noise repeats every second; 1000 ms is a whole number of frames and of 50 Hz
hum periods, so the loop has no seam."""


class SimCaller:
    """One simulated Twilio call. Construct, then ``await run()`` once.

    The constructor synthesizes (or reads) the caller's audio up front, a few ms of CPU
    per second of speech, so the real-time loop never does; a bad ``wav_in`` raises
    here (:class:`~bridge.audio.wavio.WavFormatError`, :class:`OSError`).

    While :meth:`run` is in progress, tests can watch and steer the call: the
    ``wait_*`` methods, :attr:`playback`, :meth:`send_raw`, :meth:`hangup` and
    :meth:`abort`.
    """

    __slots__ = (
        "_aborted",
        "_arrivals",
        "_call_scope",
        "_changed",
        "_clears_done",
        "_close",
        "_conn_scope",
        "_counters",
        "_hangup_requested",
        "_jitter",
        "_noise",
        "_noise_frames",
        "_ran",
        "_recorder",
        "_scheduler",
        "_seq",
        "_speech",
        "_stream_start",
        "_wire_lock",
        "_ws",
        "options",
        "playback",
    )

    def __init__(self, options: CallerOptions) -> None:
        self.options = options
        self.playback = TwilioPlayback()
        """Twilio's outbound buffer for this call; live, for tests."""
        self._speech = prepare_speech(options)
        self._noise = (
            None
            if options.noise_dbfs is None
            else synth.line_noise(_NOISE_LOOP_MS, seed=0, level_dbfs=options.noise_dbfs)
        )
        # The noise loop's frames, encoded once: a frame without speech is one of them, and
        # encoding each frame anew was about 6 % of the load generator's CPU at 20 calls.
        self._noise_frames = (
            ()
            if self._noise is None
            else tuple(
                mulaw.encode_float(self._noise[at : at + FRAME_BYTES])
                for at in range(0, len(self._noise), FRAME_BYTES)
            )
        )
        self._jitter = random.Random(options.jitter_seed) if options.jitter_ms > 0 else None
        self._scheduler: SpeechScheduler | None = None
        self._recorder = CallRecorder(origin=0.0)
        """Replaced when :meth:`run` starts, with the real time zero."""
        self._counters = WireCounters()
        self._stream_start: float | None = None
        self._ws: WebSocketConnection | None = None
        self._wire_lock = trio.Lock()
        """Serialises sequence numbers, playback-model updates and sends, so mark
        echoes leave in the order the model produced them."""
        self._seq = 0
        """Last ``sequenceNumber`` used; one counter for every message type."""
        self._changed = trio.Event()
        """Set (and replaced) whenever call state changes; ``wait_*`` re-check on it."""
        self._clears_done = 0
        """Clears whose echoes have been sent (``wait_clear``)."""
        self._close: CloseInfo | None = None
        self._call_scope: trio.CancelScope | None = None
        self._conn_scope: trio.CancelScope | None = None
        self._arrivals: ArrivalStampedStream | None = None
        """The socket's kernel receive times, when ``options.stamp_arrivals``."""
        self._hangup_requested = trio.Event()
        self._aborted = False
        self._ran = False

    # -- public entry point ------------------------------------------------------------

    async def run(self) -> CallerReport:
        """Place the call and return the report once it has ended.

        Writes ``options.wav_out`` (creating its directory) before returning.

        Raises:
            CallerConnectError: the WebSocket could not be opened.
            RuntimeError: ``run`` was already called on this caller.
        """
        if self._ran:
            raise RuntimeError("a SimCaller places one call; create a new one")
        self._ran = True
        self._recorder = CallRecorder(origin=self.options.clock())
        await self._connect_and_call()
        return self._finish()

    # -- live hooks for tests and benchmarks -------------------------------------------

    @property
    def origin(self) -> float:
        """Clock time (s) the call started connecting: time zero of the report's ``t_ms``."""
        return self._recorder.origin

    async def wait_stream_started(self) -> None:
        """Until ``start`` has been sent."""
        await self._wait_for(lambda: True if self._stream_start is not None else None)

    async def wait_ai_turn_started(self, n: int) -> AiTurn:
        """Until AI turn ``n`` (1-based) has started playing at the caller."""
        return await self._wait_for(lambda: self._turn(n))

    async def wait_ai_turn_ended(self, n: int) -> AiTurn:
        """Until AI turn ``n`` has finished playing (300 ms after it drained, or cleared)."""
        return await self._wait_for(
            lambda: t if (t := self._turn(n)) is not None and t.end is not None else None
        )

    async def wait_clear(self, n: int = 1) -> ClearResult:
        """Until the ``n``-th ``clear`` (1-based) has been handled and its marks echoed."""
        return await self._wait_for(
            lambda: self.playback.clears[n - 1] if self._clears_done >= n else None
        )

    async def wait_closed(self) -> CloseInfo:
        """Until the WebSocket has closed, by either side."""
        return await self._wait_for(lambda: self._close)

    async def send_raw(self, frame: str | bytes) -> None:
        """Send ``frame`` as is (tests inject malformed frames).

        Raises:
            RuntimeError: not connected yet.
            trio_websocket.ConnectionClosed: the socket is closed.
        """
        if self._ws is None:
            raise RuntimeError("the caller is not connected")
        async with self._wire_lock:
            await self._ws.send_message(frame)

    def hangup(self) -> None:
        """Hang up now: send ``stop`` and close, instead of waiting for the script."""
        self._hangup_requested.set()

    def abort(self) -> None:
        """Drop the TCP connection without ``stop`` or a WebSocket close handshake."""
        self._aborted = True
        for scope in (self._call_scope, self._conn_scope):
            if scope is not None:
                scope.cancel()

    # -- connection --------------------------------------------------------------------

    def _upgrade_headers(self) -> list[tuple[bytes, bytes]]:
        token = self.options.auth_token
        if token is None:
            return []
        signature = compute_signature(token, self.options.signature_url or self.options.url)
        return [(b"x-twilio-signature", signature.encode("ascii"))]

    async def _connect_and_call(self) -> None:
        url = self.options.url
        target = WsTarget.from_url(url)
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
                if target.use_ssl:
                    stream = await trio.open_ssl_over_tcp_stream(
                        target.host,
                        target.port,
                        ssl_context=ssl.create_default_context(),
                        https_compatible=True,
                    )
                else:
                    stream = await trio.open_tcp_stream(target.host, target.port)
        except (OSError, trio.TooSlowError) as exc:
            raise CallerConnectError(url, f"cannot connect: {exc!r}") from exc
        async with stream:
            try:
                # This nursery owns trio-websocket's reader task; cancelling it and then
                # closing the stream is how abort() drops TCP without a close handshake.
                async with trio.open_nursery() as conn:
                    self._conn_scope = conn.cancel_scope
                    read_from = stream
                    if self.options.stamp_arrivals and isinstance(stream, trio.SocketStream):
                        self._arrivals = ArrivalStampedStream(stream)
                        # trio-websocket types its stream as a socket or TLS stream, but
                        # only reads, writes and closes it (its local/remote properties,
                        # which look for a socket, are never read here).
                        read_from = cast(trio.SocketStream, self._arrivals)
                    with trio.fail_after(CONNECT_TIMEOUT_S):
                        ws = await wrap_client_stream(
                            conn,
                            read_from,
                            target.host_header,
                            target.resource,
                            extra_headers=self._upgrade_headers(),
                        )
                    try:
                        await self._call(ws)
                    finally:
                        if not self._aborted:
                            with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                                await ws.aclose()
                            self._closed("caller", ws.closed)
                        conn.cancel_scope.cancel()
            except* ConnectionRejected as group:
                first = group.exceptions[0]
                status = first.status_code if isinstance(first, ConnectionRejected) else None
                raise CallerConnectError(
                    url, f"handshake rejected with HTTP {status}", status
                ) from None
            except* (HandshakeError, trio.TooSlowError) as group:
                raise CallerConnectError(
                    url, f"handshake failed: {group.exceptions[0]!r}"
                ) from None
        if self._aborted:
            self._closed("abort", None)

    async def _call(self, ws: WebSocketConnection) -> None:
        """Run the call on an open WebSocket until hang-up, bridge close or abort."""
        self._ws = ws
        self._recorder.event(
            self.options.clock(), EventKind.CONNECTED, f"connected to {self.options.url}"
        )
        async with trio.open_nursery() as call:
            self._call_scope = call.cancel_scope
            if self._aborted:
                call.cancel_scope.cancel()
            call.start_soon(self._until_closed, self._receive)
            call.start_soon(self._until_closed, self._echo_due_marks)
            await self._until_closed(self._converse)
            call.cancel_scope.cancel()

    async def _until_closed(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run ``task``; a closed socket ends the whole call instead of failing it."""
        try:
            await task()
        except ConnectionClosed as exc:
            self._closed("bridge", exc.reason)
            if self._call_scope is not None:
                self._call_scope.cancel()

    def _closed(self, by: Literal["caller", "bridge", "abort"], reason: CloseReason | None) -> None:
        """Record the first close; later ones (e.g. our aclose after theirs) add nothing."""
        if self._close is not None:
            return
        now = self.options.clock()
        code = None if reason is None else reason.code
        text = None if reason is None else reason.reason
        if by == "bridge":
            detail = f"bridge closed the socket (code {code}{f': {text}' if text else ''})"
        elif by == "caller":
            detail = f"socket closed (code {code})"
        else:
            detail = "caller dropped TCP (no stop, no close handshake)"
        self._close = CloseInfo(by, code, text, self._recorder.ms(now))
        self._recorder.event(now, EventKind.CLOSED, detail)
        self._notify()

    # -- sending -----------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _send_locked(self, message: wire.JsonObject) -> None:
        """Send ``message``; the caller holds ``_wire_lock``."""
        if self._ws is None:
            raise RuntimeError("the caller is not connected")
        await self._ws.send_message(wire.encode(message))

    async def _echo_locked(self, names: list[str]) -> None:
        sid = self.options.stream_sid
        for name in names:
            await self._send_locked(wire.mark(sequence=self._next_seq(), stream_sid=sid, name=name))
            self._counters.marks_sent += 1

    async def _converse(self) -> None:
        """``connected``, ``start``, real-time media until hang-up, then ``stop``."""
        options = self.options
        async with self._wire_lock:
            await self._send_locked(wire.connected())
            stream_start = options.clock()
            await self._send_locked(
                wire.start(
                    sequence=self._next_seq(),
                    stream_sid=options.stream_sid,
                    call_sid=options.call_sid,
                    account_sid=options.account_sid,
                    custom_parameters=options.custom_parameters,
                )
            )
        self._stream_start = stream_start
        self._scheduler = SpeechScheduler(self._speech, options.script.hangup, stream_start)
        self._recorder.event(
            stream_start, EventKind.START_SENT, f"start sent (stream {options.stream_sid})"
        )
        self._notify()
        reason = await self._stream_media(self._scheduler, stream_start)
        async with self._wire_lock:
            await self._send_locked(
                wire.stop(
                    sequence=self._next_seq(),
                    stream_sid=options.stream_sid,
                    account_sid=options.account_sid,
                    call_sid=options.call_sid,
                )
            )
        self._recorder.event(
            options.clock(), EventKind.STOP_SENT, f"hangs up ({reason}): stop sent"
        )

    async def _stream_media(self, scheduler: SpeechScheduler, stream_start: float) -> str:
        """Send frame ``k`` at ``stream_start + 20 ms * (k + 1)`` until it is time to hang up.

        Frame ``k`` carries caller audio [20k, 20k + 20) ms, so it leaves when that audio
        has been "captured"; a frame is sent only if it ends by the hang-up time. Returns
        why the caller hangs up.
        """
        clock = self.options.clock
        give_up = self._recorder.origin + self.options.max_duration_s
        hangup_at = math.inf
        k = 0
        while True:
            frame_start = stream_start + k * _FRAME_S
            frame_end = frame_start + _FRAME_S
            with trio.move_on_at(self._trio_time(min(frame_end, give_up, hangup_at))):
                await self._hangup_requested.wait()
            if self._hangup_requested.is_set():
                return "requested"
            if frame_end > give_up + TIME_EPS_S:
                self._recorder.event(
                    clock(),
                    EventKind.MAX_DURATION,
                    f"max call duration reached ({self.options.max_duration_s:g} s)",
                )
                return "max duration"
            if frame_end > hangup_at + TIME_EPS_S:
                return "script"
            if self._jitter is not None:
                # Late by up to jitter_ms after its capture; the frames behind wait for it.
                late_s = self._jitter.uniform(0.0, self.options.jitter_ms) / 1000.0
                await trio.sleep_until(self._trio_time(frame_end + late_s))
            await self._advance()
            turns = self.playback.turns
            for start, speech in scheduler.schedule(frame_start, turns):
                self._recorder.event(
                    start,
                    EventKind.SPEECH_START,
                    f"starts speaking ({speech.duration_s:.1f} s, {speech.label})",
                )
            resolved = scheduler.hangup_time(turns)
            hangup_at = math.inf if resolved is None else resolved
            if frame_end > hangup_at + TIME_EPS_S:
                return "script"
            if clock() - frame_end > _LATE_FRAME_S:
                self._counters.late_frames += 1
            await self._send_media(scheduler, k)
            self._recorder.speech_ends(scheduler.speech, frame_end, cut_off=False)
            k += 1

    async def _send_media(self, scheduler: SpeechScheduler, k: int) -> None:
        if self.options.is_lost(k * FRAME_MS):
            self._counters.media_lost += 1
            return
        first = k * FRAME_BYTES
        if self._noise is None:
            samples = np.zeros(FRAME_BYTES, dtype=np.float32)
        else:
            at = first % len(self._noise)
            samples = self._noise[at : at + FRAME_BYTES].copy()
        if scheduler.overlay(first, samples):
            payload = mulaw.encode_float(samples)
        elif self._noise is not None:
            payload = self._noise_frames[at // FRAME_BYTES]
        else:
            payload = _SILENT_FRAME
        async with self._wire_lock:
            if self.options.on_media_sent is not None:
                self.options.on_media_sent(self.options.clock(), k * FRAME_MS, payload)
            await self._send_locked(
                wire.media(
                    sequence=self._next_seq(),
                    stream_sid=self.options.stream_sid,
                    chunk=k + 1,
                    timestamp_ms=k * FRAME_MS,
                    payload=payload,
                )
            )
        self._counters.media_sent += 1

    # -- receiving and playback --------------------------------------------------------

    async def _receive(self) -> None:
        """Read bridge frames until the socket closes.

        trio-websocket queues one incoming message (its default); this task is the only
        reader and waits only for the wire lock, so the bridge feels TCP backpressure no
        longer than an echo send takes.
        """
        if self._ws is None:
            raise RuntimeError("the caller is not connected")
        while True:
            frame = await self._ws.get_message()
            received_at = self.options.clock()
            if self._arrivals is not None:
                received_at = self._arrivals.arrival(received_at)
            parsed = wire.parse_bridge_message(frame, self.options.stream_sid)
            if isinstance(parsed, wire.Violation):
                self._recorder.violation(received_at, parsed.code, parsed.detail)
            else:
                await self._apply(parsed, received_at)

    async def _apply(self, message: wire.BridgeMessage, now: float) -> None:
        """Feed one bridge message, received at ``now`` (the options' clock), to the
        playback model and send the echoes it yields.

        The message is stamped when it arrived or was read (``options.stamp_arrivals``),
        not once the wire lock is ours: taking the lock yields to the scheduler, and what
        Twilio would play does not wait for this caller's echo sends. Playback may have
        been advanced past ``now`` meanwhile (by this caller's frame ticks): it takes
        audio as of its arrival and marks and clears at its own clock, which never goes
        back (:class:`TwilioPlayback`).
        """
        async with self._wire_lock:
            if isinstance(message, wire.MediaIn):
                echoes = self.playback.push_media(message.payload, now)
                self._counters.media_received += 1
                self._counters.media_received_bytes += len(message.payload)
            elif isinstance(message, wire.MarkIn):
                echoes = self.playback.push_mark(message.name, now)
            else:
                result = self.playback.clear(now)
                echoes = list(result.echoes)
                self._recorder.event(
                    now,
                    EventKind.CLEAR,
                    f"clear: {len(result.cleared_marks)} marks echoed,"
                    f" {result.discarded_ms:.0f} ms unplayed dropped",
                )
            await self._echo_locked(echoes)
            self._turn_events()
            if isinstance(message, wire.ClearIn):
                self._clears_done += 1
        self._notify()

    async def _echo_due_marks(self) -> None:
        """Echo each mark when playback reaches it: sleep until the next mark is due,
        waking early whenever the call state changes (new marks, a clear)."""
        while True:
            changed = self._changed
            deadline = self.playback.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else self._trio_time(deadline)):
                await changed.wait()
            await self._advance()

    async def _advance(self) -> None:
        """Play up to now, echo the marks reached and note AI turns starting or ending."""
        async with self._wire_lock:
            echoes = self.playback.advance(self.options.clock())
            await self._echo_locked(echoes)
            changed = self._turn_events() or bool(echoes)
        if changed:
            self._notify()

    def _turn_events(self) -> bool:
        speech = () if self._scheduler is None else self._scheduler.speech
        return self._recorder.turn_events(self.playback, speech)

    # -- small helpers -----------------------------------------------------------------

    def _trio_time(self, t: float) -> float:
        """Clock time (s) to a Trio deadline."""
        return trio.current_time() + (t - self.options.clock())

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_for(self, ready: Callable[[], T | None]) -> T:
        """Until ``ready()`` returns a value. Never returns if that cannot happen any
        more (e.g. the call ended): wrap in a timeout."""
        while (value := ready()) is None:
            await self._changed.wait()
        return value

    def _turn(self, n: int) -> AiTurn | None:
        turns = self.playback.turns
        return turns[n - 1] if len(turns) >= n else None

    def _finish(self) -> CallerReport:
        """Close the books: last playback, cut-off speech, the report and the WAV."""
        end = self.options.clock()
        close = self._close
        recorder = self._recorder
        # Audio played on until the socket closed; echoes due by then can't be sent.
        stopped = end if close is None else recorder.origin + close.t_ms / 1000.0
        self.playback.advance(max(self.playback.now, stopped))
        speech = () if self._scheduler is None else self._scheduler.speech
        if self._stream_start is not None:
            frames = self._counters.media_sent + self._counters.media_lost
            sent_until = self._stream_start + frames * _FRAME_S
            recorder.speech_ends(speech, sent_until, cut_off=True)
        report = recorder.report(
            call_sid=self.options.call_sid,
            stream_sid=self.options.stream_sid,
            end=end,
            playback=self.playback,
            speech=speech,
            counters=self._counters,
            close=close,
        )
        if self.options.wav_out is not None:
            self.options.wav_out.parent.mkdir(parents=True, exist_ok=True)
            wavio.write_ulaw_wav(
                self.options.wav_out,
                self.playback.heard_audio(recorder.origin, end),
                self.options.wav_out_rate,
            )
        logger.info(
            "sim caller: call {} ended after {:.1f} s, heard {:.1f} s of AI audio",
            self.options.call_sid,
            report.duration_ms / 1000,
            report.heard_ms / 1000,
        )
        return report


def call_failure(report: CallerReport) -> str | None:
    """Why ``report`` is not a proper call, in one line, or ``None`` when it is.

    Not proper: the bridge closed the stream with any code but 1000 (1011 when its upstream
    failed, 1006 when the connection dropped), or no caller audio was ever sent (the call
    lasted 0 s). A close by the caller, after its ``stop``, is how a call should end.
    """
    close = report.close
    if close is not None and close.by == "bridge" and close.code != 1000:
        how = f"with code {close.code}" if close.code is not None else "without a close code"
        why = f": {close.reason}" if close.reason else ""
        return f"the bridge ended the call {how}{why}"
    if report.media_sent + report.media_lost == 0:
        return "the call ended before any caller audio was sent (0 s)"
    return None


async def run_call_cli(options: CallerOptions) -> CallerReport:
    """Place the call, print the timeline and say where the heard audio went.

    Raises:
        CallerConnectError: the WebSocket could not be opened.
    """
    report = await SimCaller(options).run()
    print(format_timeline(report))
    if options.wav_out is not None:
        print(f"What the caller heard: {options.wav_out} ({options.wav_out_rate} Hz)")
    return report
