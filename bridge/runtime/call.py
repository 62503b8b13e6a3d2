"""One phone call: one Trio nursery, from the Twilio stream's ``start`` to ``CALL_END``.

Tasks of the call (all in one nursery; the first failure cancels the others):

* **Twilio reader**: parses Twilio frames; caller audio goes to the gate over
  ``inbound`` (bounded: 50 frames = 1 s; when full the *oldest* frame is dropped and
  counted, because real-time audio must not stall the reader); marks go to the core;
  ``stop`` or a socket close ends the call.
* **OpenAI reader**: parses Realtime events and executes the core's actions (barge-in
  included, so the ``clear`` goes out from the task that received ``speech_started``).
* **Audio gate**: one decision per inbound frame (noise → silence, voice onset → local
  fast barge-in) and ``input_audio_buffer.append`` upstream.
* **TX writer**: paces AI audio to Twilio, ``lead_ms`` ahead of real time, a ``mark``
  after each frame; woken through ``doorbell`` (capacity 1: when full, a ring is already
  pending, so another is dropped; rings carry no data).
* **Supervisors**: upstream heartbeat (a ping unanswered for ``heartbeat_timeout_s``
  ends the call as a stall), the call length limit, and the notes pump (``notes``:
  bounded control channel; senders wait).

Cleanup, in this fixed order, shielded and time-bounded, whatever ended the call:
stop audio (the tasks are gone: nothing more is written), close the OpenAI socket
(0.5 s, then abort), end the Twilio leg (close the stream so the TwiML fallback plays;
with Twilio credentials also hang up through REST, once), then one ``CALL_END`` line.
"""

from __future__ import annotations

import contextlib
import math

import trio
from loguru import logger

from bridge.core import realtime as rt
from bridge.core import twilio
from bridge.core.actions import Action, BargeIn, EndCall, Log, SendUpstream, WakeTx
from bridge.core.call import CallCore, TxSend, TxWait
from bridge.logs import log_tagged
from bridge.runtime.codec import UpstreamCodec
from bridge.runtime.errors import CallEnded
from bridge.runtime.gate import GateStage, InboundFrame
from bridge.runtime.registry import NOTES_CHANNEL_SIZE, CallHandle, NoteRequest
from bridge.runtime.services import Services
from bridge.runtime.twilio_leg import TwilioLeg
from bridge.runtime.upstream import Upstream, UpstreamUnavailable, connect_upstream

INBOUND_QUEUE_FRAMES = 50
UPSTREAM_CLOSE_S = 0.5
TWILIO_CLOSE_S = 0.5
REST_HANGUP_S = 3.0


class CallIO:
    """Runtime resources of one call. Every field is set here; ``__slots__`` forbids others."""

    __slots__ = (
        "codec",
        "core",
        "doorbell_recv",
        "doorbell_send",
        "end_reason",
        "gate",
        "handle",
        "inbound_recv",
        "inbound_send",
        "notes_recv",
        "scope",
        "services",
        "session_ready",
        "started_at",
        "twilio",
    )

    def __init__(self, services: Services, twilio_leg: TwilioLeg, start: twilio.Start) -> None:
        now = trio.current_time()
        self.services = services
        self.twilio = twilio_leg
        self.started_at = now
        self.core = CallCore(
            services.core_settings(), stream_sid=start.stream_sid, call_sid=start.call_sid, now=now
        )
        self.codec = UpstreamCodec(self.core.settings.session.audio_format)
        self.gate = GateStage(self.core, services.config)
        self.scope = trio.CancelScope()
        self.end_reason: str | None = None
        self.session_ready = trio.Event()
        self.inbound_send, self.inbound_recv = trio.open_memory_channel[InboundFrame](
            INBOUND_QUEUE_FRAMES
        )
        self.doorbell_send, self.doorbell_recv = trio.open_memory_channel[None](1)
        notes_send, self.notes_recv = trio.open_memory_channel[NoteRequest](NOTES_CHANNEL_SIZE)
        self.handle = CallHandle(self.core, notes_send, now)

    def end(self, reason: str) -> None:
        """End the call; the first reason wins."""
        if self.end_reason is None:
            self.end_reason = reason
        self.scope.cancel()

    def ring_doorbell(self) -> None:
        # A full doorbell already holds a pending ring: one is enough.
        with contextlib.suppress(trio.WouldBlock):
            self.doorbell_send.send_nowait(None)

    def push_inbound(self, frame: InboundFrame) -> None:
        """Queue caller audio for the gate; when full, drop the oldest frame and count it."""
        while True:
            try:
                self.inbound_send.send_nowait(frame)
                return
            except trio.WouldBlock:
                self.inbound_recv.receive_nowait()
                if self.core.session_ready:
                    self.core.counters.frames_dropped_backlog += 1
                    self.services.metrics.inbound_frames_dropped += 1


# -- executing core actions ---------------------------------------------------------------


async def execute(io: CallIO, upstream: Upstream, actions: list[Action]) -> None:
    for action in actions:
        match action:
            case SendUpstream(event=event):
                await upstream.send_event(event)
            case WakeTx():
                io.ring_doorbell()
            case Log(level=level, tag=tag, message=message, fields=fields):
                log_tagged(level, tag, message, fields)
            case BargeIn():
                await _barge_in(io, upstream, action)
            case EndCall(reason=reason):
                io.end(reason)


def apply_local(io: CallIO, actions: list[Action]) -> None:
    """Execute actions that need no socket, for tasks that hold none (Twilio reader, TX
    writer). Anything else here is a bug: raising ends the call loudly, never silently."""
    for action in actions:
        match action:
            case WakeTx():
                io.ring_doorbell()
            case Log(level=level, tag=tag, message=message, fields=fields):
                log_tagged(level, tag, message, fields)
            case _:
                raise TypeError(f"{type(action).__name__} needs the upstream socket")


async def _barge_in(io: CallIO, upstream: Upstream, plan: BargeIn) -> None:
    """Run a barge-in plan in its order and log it as one ``BARGE_IN`` record."""
    clear_ms: float | None = None
    if plan.clear is not None:
        await io.twilio.send_urgent(plan.clear)
        clear_ms = (trio.current_time() - plan.detected_at) * 1000.0
        io.gate.note_playout_stopped(trio.current_time())
        io.services.metrics.observe_reaction(clear_ms)
    if not plan.held:
        log_tagged(
            "INFO",
            "TX_FLUSH",
            f"dropped {plan.flushed_frames} frames / {plan.flushed_ms} ms (reason=BARGE_IN)",
            {"frames": plan.flushed_frames, "ms": plan.flushed_ms},
        )
        io.codec.discard_outbound()
    # The TX writer may be asleep with no deadline: a hold starts the confirmation timer.
    io.ring_doorbell()
    for event in plan.upstream:
        await upstream.send_event(event)
    upstream_ms = (trio.current_time() - plan.detected_at) * 1000.0
    io.services.metrics.barge_ins[plan.trigger] += 1
    steps = [f"trigger={plan.trigger}"]
    if plan.caller_speech_ms is not None:
        steps.append(f"speech_at={plan.caller_speech_ms:.0f}ms")
    steps.append(f"clear={clear_ms:.2f}ms" if clear_ms is not None else "clear=earlier")
    steps.append(f"flushed={plan.flushed_frames}f/{plan.flushed_ms}ms")
    steps.append(f"unplayed_at_twilio={plan.unplayed_at_twilio_ms}ms")
    if plan.held:
        steps.append("held (waiting for the server to confirm)")
    if plan.cancelled_response_ids:
        steps.append("cancel=" + ",".join(plan.cancelled_response_ids))
    if plan.truncations:
        steps.append(
            "truncate="
            + ",".join(f"{t.item_id}@{t.audio_end_ms}/{t.received_ms}ms" for t in plan.truncations)
        )
    if plan.deleted_item_ids:
        steps.append("delete=" + ",".join(plan.deleted_item_ids))
    if plan.upstream:
        steps.append(f"upstream_sent={upstream_ms:.2f}ms")
    log_tagged(
        "INFO",
        "BARGE_IN",
        " ".join(steps),
        {
            "trigger": plan.trigger,
            "clear_ms": clear_ms,
            "flushed_frames": plan.flushed_frames,
            "flushed_ms": plan.flushed_ms,
            "unplayed_at_twilio_ms": plan.unplayed_at_twilio_ms,
            "cancelled": list(plan.cancelled_response_ids),
            "truncations": [(t.item_id, t.audio_end_ms, t.received_ms) for t in plan.truncations],
            "deleted": list(plan.deleted_item_ids),
            "upstream_ms": upstream_ms if plan.upstream else None,
            "held": plan.held,
            "caller_speech_ms": plan.caller_speech_ms,
        },
    )


# -- tasks ------------------------------------------------------------------------------


async def _twilio_reader(io: CallIO) -> None:
    core = io.core
    while True:
        data = await io.twilio.receive()
        if data is None:
            io.end(f"twilio_disconnected code={io.twilio.disconnect_code}")
            return
        event = twilio.parse_twilio_message(data)
        match event:
            case twilio.Media():
                core.counters.frames_in += 1
                io.gate.note_caller_time(event.timestamp_ms, trio.current_time())
                io.push_inbound(InboundFrame(event.payload, event.timestamp_ms))
            case twilio.Mark():
                apply_local(io, core.on_twilio_mark(event.name, trio.current_time()))
            case twilio.Stop():
                io.end("twilio_stop")
                return
            case twilio.Dtmf():
                logger.debug("DTMF digit={}", event.digit)
            case twilio.Malformed():
                core.counters.twilio_malformed += 1
                io.services.metrics.malformed_messages += 1
                log_tagged(
                    "WARNING",
                    "TWILIO_MALFORMED",
                    f"{event.reason} (#{core.counters.twilio_malformed}); call continues",
                )
            case twilio.Start() | twilio.Connected():
                logger.warning("TWILIO_UNEXPECTED duplicate {} ignored", type(event).__name__)
            case twilio.UnknownTwilioEvent():
                logger.debug("TWILIO_UNKNOWN event={!r} ignored", event.event)


async def _openai_reader(io: CallIO, upstream: Upstream) -> None:
    core = io.core
    while True:
        data = await upstream.receive()
        now = trio.current_time()
        event = rt.parse_realtime_event(data)
        if isinstance(event, rt.ErrorEvent):
            io.services.metrics.upstream_errors += 1
        elif isinstance(event, rt.MalformedEvent):
            io.services.metrics.malformed_messages += 1
        if isinstance(event, rt.AudioDelta) and core.is_cancelled(event.response_id):
            # Late audio of a cancelled response: the core drops and counts it; it must not
            # pass through (and prime) the outbound resampler.
            await execute(io, upstream, core.on_realtime_event(event, now))
            continue
        for converted in io.codec.outbound(event):
            await execute(io, upstream, core.on_realtime_event(converted, now))
        if core.session_ready and not io.session_ready.is_set():
            io.session_ready.set()


async def _gate_task(io: CallIO, upstream: Upstream) -> None:
    # Until the session confirms μ-law, appended audio would be misread as PCM; frames wait
    # in `inbound`, which keeps the most recent second.
    await io.session_ready.wait()
    async for frame in io.inbound_recv:
        release, actions = io.gate.process(frame, trio.current_time())
        # Under load frames queue up: take them all now and send one append for the lot
        # (same audio, same order, fewer messages). Unloaded, this is one frame per append.
        while release and not actions:
            try:
                frame = io.inbound_recv.receive_nowait()
            except trio.WouldBlock:
                break
            more, actions = io.gate.process(frame, trio.current_time())
            release += more
        await execute(io, upstream, actions)
        for text in io.codec.appends(release):
            await upstream.send_text(text)


async def _tx_writer(io: CallIO) -> None:
    core, leg = io.core, io.twilio
    while True:
        async with leg.lock:
            now = trio.current_time()
            decision = core.tx_poll(now)
            if isinstance(decision, TxSend):
                await leg.write(decision.media)
                await leg.write(decision.mark)
        if isinstance(decision, TxSend):
            io.gate.note_playout(decision.frame.payload, decision.play_start_at)
            continue
        wake_at = decision.until if isinstance(decision, TxWait) else math.inf
        timer_at = core.next_deadline()
        with trio.move_on_at(min(wake_at, timer_at if timer_at is not None else math.inf)):
            await io.doorbell_recv.receive()
        timer_at = core.next_deadline()
        if timer_at is not None and trio.current_time() >= timer_at:
            apply_local(io, core.on_timer(trio.current_time()))


async def _heartbeat(io: CallIO, upstream: Upstream) -> None:
    config = io.services.config
    while True:
        await trio.sleep(config.heartbeat_interval_s)
        with trio.move_on_after(config.heartbeat_timeout_s) as waited:
            await upstream.ping()
        if waited.cancelled_caught:
            io.end(f"openai_stall no pong within {config.heartbeat_timeout_s:g}s")
            return


async def _notes_pump(io: CallIO, upstream: Upstream) -> None:
    async for note in io.notes_recv:
        actions = io.core.submit_note(
            note.text,
            respond=note.respond,
            awaits_confirmation=note.awaits_confirmation,
            epoch=note.epoch,
        )
        await execute(io, upstream, actions)


async def _call_limit(io: CallIO) -> None:
    await trio.sleep(io.services.config.max_call_s)
    io.end("max_call_duration")


# -- the call -----------------------------------------------------------------------------


async def _run(io: CallIO) -> None:
    config = io.services.config
    upstream: Upstream | None = None
    # The connection nursery (trio-websocket's reader) is outside the call's cancel scope:
    # ending the call must not kill the reader that processes the peer's close reply.
    async with trio.open_nursery() as connection_nursery:
        try:
            with io.scope:
                async with trio.open_nursery() as call:
                    sid = io.core.call_sid
                    call.start_soon(_twilio_reader, io, name=f"twilio_reader:{sid}")
                    try:
                        upstream = await connect_upstream(
                            connection_nursery,
                            io.services.upstream_url,
                            config.openai_api_key,
                            timeout_s=config.session_timeout_s,
                        )
                    except UpstreamUnavailable as exc:
                        io.end(f"openai_handshake_failed {exc}")
                        return
                    call.start_soon(_openai_reader, io, upstream, name=f"openai_reader:{sid}")
                    call.start_soon(_gate_task, io, upstream, name=f"audio_gate:{sid}")
                    call.start_soon(_tx_writer, io, name=f"tx_writer:{sid}")
                    call.start_soon(_heartbeat, io, upstream, name=f"upstream_heartbeat:{sid}")
                    call.start_soon(_notes_pump, io, upstream, name=f"notes_pump:{sid}")
                    call.start_soon(_call_limit, io, name=f"call_limit:{sid}")
                    await execute(io, upstream, io.core.on_upstream_open(trio.current_time()))
                    with trio.move_on_after(config.session_timeout_s):
                        await io.session_ready.wait()
                    if not io.session_ready.is_set():
                        waited_s = config.session_timeout_s
                        io.end(f"openai_session_timeout no session.updated in {waited_s:g}s")
        finally:
            # Step 2 of cleanup (step 1, stop audio, is the call nursery being done):
            # close the OpenAI socket, bounded; a stalled peer gets no grace period.
            if upstream is not None:
                stalled = (io.end_reason or "").startswith("openai_stall")
                with trio.move_on_after(0 if stalled else UPSTREAM_CLOSE_S, shield=True):
                    await upstream.aclose()
            connection_nursery.cancel_scope.cancel()


def _dbfs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}dBFS"


def _leaf_exceptions(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaf_exceptions(sub)]
    return [exc]


async def _finish(io: CallIO) -> None:
    """Steps 3 and 4 of cleanup: end the Twilio leg, then the one ``CALL_END`` line."""
    services = io.services
    reason = io.end_reason or ("server_shutdown" if services.draining else "cancelled")
    io.end_reason = reason
    io.handle.end_reason = reason
    with trio.move_on_after(TWILIO_CLOSE_S):
        await io.twilio.close(1000 if reason == "twilio_stop" else 1011, reason)
    hangup = "not configured"
    # After a Twilio `stop` the stream is over at Twilio's end (caller hung up, or the
    # application moved the call on, e.g. a transfer); a REST hang-up could cut a transfer.
    if services.rest is not None and reason != "twilio_stop":
        with trio.move_on_after(REST_HANGUP_S) as waited:
            result = await services.rest.hang_up(io.core.call_sid)
            hangup = result.detail
            services.metrics.rest_hangups["ok" if result.ok else "failed"] += 1
        if waited.cancelled_caught:
            hangup = f"timed out after {REST_HANGUP_S:g}s"
            services.metrics.rest_hangups["failed"] += 1
    elif services.rest is not None:
        hangup = "skipped (Twilio ended the stream)"
    counters = io.core.counters
    duration = trio.current_time() - io.started_at
    services.metrics.calls_ended[reason.split(" ", 1)[0]] += 1
    services.metrics.late_audio_dropped_ms += counters.late_audio_ms_dropped
    services.metrics.inbound_gap_filled_ms += counters.inbound_gap_filled_ms
    log_tagged(
        "INFO" if reason == "twilio_stop" else "WARNING",
        "CALL_END",
        f"reason={reason} duration_s={duration:.2f} barge_ins={counters.barge_ins} "
        f"frames_in={counters.frames_in} audio_ms_sent={counters.audio_ms_sent} "
        f"late_deltas_dropped={counters.late_deltas_dropped} "
        f"malformed={counters.twilio_malformed}+{counters.upstream_malformed} "
        f"gated={counters.frames_gated} inbound_gap_filled_ms={counters.inbound_gap_filled_ms} "
        f"noise_floor={_dbfs(io.gate.floor_dbfs)} "
        f"rest_hangup={hangup}",
        {
            "reason": reason,
            "duration_s": round(duration, 3),
            "noise_floor_dbfs": io.gate.floor_dbfs,
            **counters.as_dict(),
        },
    )
    services.registry.remove(io.handle)
    io.handle.ended.set()


async def run_call(services: Services, leg: TwilioLeg) -> None:
    """Serve one Twilio stream until the call ends. Raises only ``trio.Cancelled``."""
    start = await _wait_for_start(leg, services.config.start_timeout_s)
    if start is None:
        with trio.move_on_after(TWILIO_CLOSE_S, shield=True):
            await leg.close(1008, "no start message")
        return
    io = CallIO(services, leg, start)
    with logger.contextualize(call_sid=start.call_sid, stream_sid=start.stream_sid):
        services.metrics.calls_started += 1
        services.registry.add(io.handle)
        log_tagged(
            "INFO",
            "CALL_START",
            f"stream {start.stream_sid} params={dict(start.custom_parameters)}",
        )
        try:
            await _run(io)
        except Exception as exc:  # noqa: BLE001 - the call boundary: one call's bug ends one call
            leaves = _leaf_exceptions(exc)
            known = [leaf for leaf in leaves if isinstance(leaf, CallEnded)]
            if len(known) == len(leaves):
                io.end(known[0].reason)
            else:
                bug = next(leaf for leaf in leaves if not isinstance(leaf, CallEnded))
                io.end(f"internal_error {type(bug).__name__}: {bug}")
                logger.opt(exception=bug).error(
                    "CALL_ERROR a bug in the bridge ended this call (other calls unaffected)"
                )
        finally:
            with trio.CancelScope(shield=True):
                await _finish(io)


async def _wait_for_start(leg: TwilioLeg, timeout_s: float) -> twilio.Start | None:
    """Read ``connected`` then ``start``; ``None`` if it does not come in time."""
    with trio.move_on_after(timeout_s):
        while True:
            data = await leg.receive()
            if data is None:
                logger.warning("CALL_END reason=twilio_disconnected_before_start")
                return None
            event = twilio.parse_twilio_message(data)
            if isinstance(event, twilio.Start):
                return event
            if not isinstance(event, twilio.Connected):
                logger.warning("TWILIO_EARLY {} before start ignored", type(event).__name__)
    logger.warning("CALL_END reason=twilio_start_timeout no start within {:g}s", timeout_s)
    return None
