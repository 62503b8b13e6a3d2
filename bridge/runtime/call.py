"""One phone call: one Trio nursery, from the Twilio stream's ``start`` to ``CALL_END``.

Tasks of the call (all in one nursery; the first failure cancels the others). They only
read, write, pace and supervise; every decision is the core's (:class:`CallCore`):

* **Twilio reader**: hands each Twilio frame to the core; caller audio goes to the gate
  over ``inbound`` (bounded: 50 frames = 1 s; when full the *oldest* frame is dropped and
  counted, because real-time audio must not stall the reader); ``stop`` or a socket close
  ends the call. It holds no upstream socket, and mypy keeps it that way.
* **OpenAI reader**: hands each Realtime event to the core and executes its actions
  (barge-in included, so the ``clear`` goes out from the task that received
  ``speech_started``).
* **Audio gate**: takes the caller frames waiting in ``inbound`` and writes what the core
  releases (``input_audio_buffer.append``, a local fast barge-in).
* **TX writer**: paces AI audio to Twilio as the core decides, a ``mark`` after each frame;
  woken through ``doorbell`` (capacity 1: when full, a ring is already pending, so another is
  dropped; rings carry no data).
* **Supervisors**: upstream heartbeat (a ping unanswered for ``heartbeat_timeout_s`` ends
  the call as a stall), the call length limit, and the notes pump (``notes``: bounded
  control channel; senders wait).
* **Application link** (:mod:`bridge.runtime.app_link`): tool requests, exits (Twilio REST),
  tool timers and call events, fed by :class:`~bridge.core.actions.ToApp` actions through
  its bounded channels; its HTTP never runs in the OpenAI reader.

Cleanup, in this fixed order, shielded and time-bounded, whatever ended the call:
stop audio (the tasks are gone: nothing more is written), close the OpenAI socket
(0.5 s, then abort), end the Twilio leg (close the stream so the TwiML fallback plays;
with Twilio credentials also hang up through REST, once), then one ``CALL_END`` line.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from functools import partial
from typing import assert_never

import trio
from loguru import logger

from bridge.core import realtime as rt
from bridge.core import twilio
from bridge.core.actions import (
    Action,
    BargeIn,
    EndCall,
    LocalAction,
    Log,
    QueueCallerAudio,
    SendUpstream,
    ToApp,
    WakeTx,
)
from bridge.core.call import CallCore, TxSend, TxWait
from bridge.core.call_events import CallEnded as CallEndedEvent
from bridge.core.call_events import CallStarted
from bridge.core.ending import CallEnd, EndReason
from bridge.core.records import BargeInReport, CallFinished, report
from bridge.errors import CallEnded, UpstreamUnavailable
from bridge.logs import log_action, log_tagged
from bridge.runtime.app_link import AppLink
from bridge.runtime.registry import NOTES_CHANNEL_SIZE, CallHandle, NoteRequest
from bridge.runtime.services import Services
from bridge.runtime.twilio_leg import TwilioLeg
from bridge.runtime.upstream import Upstream, connect_upstream

INBOUND_QUEUE_FRAMES = 50
UPSTREAM_CLOSE_S = 0.5
TWILIO_CLOSE_S = 0.5
REST_HANGUP_S = 3.0


class CallIO:
    """Runtime resources of one call. Every field is set here; ``__slots__`` forbids others."""

    __slots__ = (
        "app",
        "core",
        "doorbell_recv",
        "doorbell_send",
        "ended_by",
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
            services.core_settings, stream_sid=start.stream_sid, call_sid=start.call_sid, now=now
        )
        self.scope = trio.CancelScope()
        self.ended_by: CallEnd | None = None
        self.session_ready = trio.Event()
        self.inbound_send, self.inbound_recv = trio.open_memory_channel[twilio.Media](
            INBOUND_QUEUE_FRAMES
        )
        self.doorbell_send, self.doorbell_recv = trio.open_memory_channel[None](1)
        notes_send, self.notes_recv = trio.open_memory_channel[NoteRequest](NOTES_CHANNEL_SIZE)
        self.handle = CallHandle(self.core, notes_send, now)
        self.app = AppLink(services, self.core)
        """Tool requests, exits and call events (:mod:`bridge.runtime.app_link`)."""

    def end(self, end: CallEnd) -> None:
        """End the call; the first end wins."""
        if self.ended_by is None:
            self.ended_by = end
        self.scope.cancel()

    def ring_doorbell(self) -> None:
        # A full doorbell already holds a pending ring: one is enough.
        with contextlib.suppress(trio.WouldBlock):
            self.doorbell_send.send_nowait(None)

    def push_inbound(self, media: twilio.Media) -> None:
        """Queue caller audio for the gate; when full, drop the oldest frame and count it."""
        while True:
            try:
                self.inbound_send.send_nowait(media)
                return
            except trio.WouldBlock:
                self.inbound_recv.receive_nowait()
                self.core.on_caller_audio_dropped()


# -- executing core actions ---------------------------------------------------------------


def apply_local(io: CallIO, actions: Sequence[LocalAction]) -> None:
    """Execute actions that need no socket (any task may)."""
    for action in actions:
        match action:
            case WakeTx():
                io.ring_doorbell()
            case Log():
                log_action(action)
            case EndCall(end=end):
                io.end(end)
            case QueueCallerAudio(media=media):
                io.push_inbound(media)
            case ToApp(work=work):
                io.app.accept(work)
            case _:
                assert_never(action)


async def execute(io: CallIO, upstream: Upstream, actions: Sequence[Action]) -> None:
    """Execute any action, in order (tasks that own the upstream socket)."""
    for action in actions:
        match action:
            case SendUpstream(event=event):
                await upstream.send(event)
            case BargeIn():
                await _barge_in(io, upstream, action)
            case WakeTx():
                await _send_due_audio(io)
            case Log() | EndCall() | QueueCallerAudio() | ToApp():
                apply_local(io, (action,))
            case _:
                assert_never(action)


async def _send_due_audio(io: CallIO) -> None:
    """Write the AI audio the pacer allows now from this task, in the scheduling step that
    received it: the first frame of a reply reaches Twilio without waiting for the TX
    writer to be scheduled. What must wait for its time is left to the TX writer."""
    leg = io.twilio
    try:
        leg.lock.acquire_nowait()
    except trio.WouldBlock:
        io.ring_doorbell()  # the TX writer is writing: it polls again when done
        return
    try:
        while isinstance(decision := io.core.tx_poll(trio.current_time()), TxSend):
            await leg.write(decision.media)
            await leg.write(decision.mark)
    finally:
        leg.lock.release()
    if isinstance(decision, TxWait):
        io.ring_doorbell()


async def _barge_in(io: CallIO, upstream: Upstream, plan: BargeIn) -> None:
    """Run a barge-in plan in its order and log it as one ``BARGE_IN`` record."""
    clear_ms: float | None = None
    if plan.clear is not None:
        await io.twilio.send_urgent(plan.clear)
        written = trio.current_time()
        io.core.on_clear_written(written)
        clear_ms = (written - plan.detected_at) * 1000.0
    if not plan.held:
        log_tagged(
            "INFO",
            "TX_FLUSH",
            f"dropped {plan.flushed_frames} frames / {plan.flushed_ms} ms (reason=BARGE_IN)",
            {"frames": plan.flushed_frames, "ms": plan.flushed_ms},
        )
    # The TX writer may be asleep with no deadline: a hold starts the confirmation timer.
    io.ring_doorbell()
    for event in plan.upstream:
        await upstream.send(event)
    upstream_ms = (trio.current_time() - plan.detected_at) * 1000.0 if plan.upstream else None
    io.services.metrics.barge_in(plan.trigger, None if clear_ms is None else clear_ms / 1000.0)
    record = BargeInReport(
        trigger=plan.trigger,
        clear_ms=clear_ms,
        flushed_frames=plan.flushed_frames,
        flushed_ms=plan.flushed_ms,
        unplayed_at_twilio_ms=plan.unplayed_at_twilio_ms,
        cancelled=plan.cancelled_response_ids,
        truncations=plan.truncations,
        deleted=plan.deleted_item_ids,
        upstream_ms=upstream_ms,
        held=plan.held,
        caller_speech_ms=plan.caller_speech_ms,
    )
    log_action(report("INFO", record))


# -- tasks ------------------------------------------------------------------------------


async def _twilio_reader(io: CallIO) -> None:
    core = io.core
    while True:
        data = await io.twilio.receive()
        if data is None:
            code = io.twilio.disconnect_code
            io.end(CallEnd(EndReason.TWILIO_DISCONNECTED, f"code={code}"))
            return
        apply_local(
            io, core.on_twilio_event(twilio.parse_twilio_message(data), trio.current_time())
        )


async def _openai_reader(io: CallIO, upstream: Upstream) -> None:
    core = io.core
    while True:
        data = await upstream.receive()
        event = rt.parse_realtime_event(data)
        await execute(io, upstream, core.on_realtime_event(event, trio.current_time()))
        if core.session_ready and not io.session_ready.is_set():
            io.session_ready.set()


async def _gate_task(io: CallIO, upstream: Upstream) -> None:
    # Until the session confirms μ-law, appended audio would be misread as PCM; frames wait
    # in `inbound`, which keeps the most recent second.
    await io.session_ready.wait()
    async for frame in io.inbound_recv:
        frames = [frame]
        # Under load frames queue up: take them all now and send one append for the lot
        # (same audio, same order, fewer messages). Unloaded, this is one frame per append.
        while True:
            try:
                frames.append(io.inbound_recv.receive_nowait())
            except trio.WouldBlock:
                break
        await execute(io, upstream, io.core.on_caller_frames(frames, trio.current_time()))


async def _tx_writer(io: CallIO) -> None:
    core, leg = io.core, io.twilio
    while True:
        async with leg.lock:
            decision = core.tx_poll(trio.current_time())
            if isinstance(decision, TxSend):
                await leg.write(decision.media)
                await leg.write(decision.mark)
        if isinstance(decision, TxSend):
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
            detail = f"no pong within {config.heartbeat_timeout_s:g}s"
            io.end(CallEnd(EndReason.OPENAI_STALL, detail))
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
    io.end(CallEnd(EndReason.MAX_CALL_DURATION))


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
                        io.end(CallEnd(EndReason.OPENAI_HANDSHAKE_FAILED, str(exc)))
                        return
                    call.start_soon(_openai_reader, io, upstream, name=f"openai_reader:{sid}")
                    call.start_soon(_gate_task, io, upstream, name=f"audio_gate:{sid}")
                    call.start_soon(_tx_writer, io, name=f"tx_writer:{sid}")
                    call.start_soon(_heartbeat, io, upstream, name=f"upstream_heartbeat:{sid}")
                    call.start_soon(_notes_pump, io, upstream, name=f"notes_pump:{sid}")
                    call.start_soon(_call_limit, io, name=f"call_limit:{sid}")
                    # Tools, exits and call events: their HTTP never runs in the OpenAI reader.
                    run_app = partial(execute, io, upstream)
                    call.start_soon(io.app.run, run_app, name=f"app_link:{sid}")
                    await execute(io, upstream, io.core.on_upstream_open(trio.current_time()))
                    with trio.move_on_after(config.session_timeout_s):
                        await io.session_ready.wait()
                    if not io.session_ready.is_set():
                        detail = f"no session.updated in {config.session_timeout_s:g}s"
                        io.end(CallEnd(EndReason.OPENAI_SESSION_TIMEOUT, detail))
        finally:
            # Step 2 of cleanup (step 1, stop audio, is the call nursery being done): the
            # caller audio not yet sent goes up, then the OpenAI socket is closed, within one
            # bound; a stalled peer gets no grace period.
            if upstream is not None:
                reason = io.ended_by.reason if io.ended_by is not None else EndReason.CANCELLED
                grace = 0 if reason.upstream_is_stalled else UPSTREAM_CLOSE_S
                with trio.move_on_after(grace, shield=True):
                    if reason.upstream_can_take_audio:
                        await _send_remaining_caller_audio(io, upstream)
                    await upstream.aclose()
            connection_nursery.cancel_scope.cancel()


async def _send_remaining_caller_audio(io: CallIO, upstream: Upstream) -> None:
    """Caller frames still queued for the gate, and its hold, in one last append."""
    frames: list[twilio.Media] = []
    while True:
        try:
            frames.append(io.inbound_recv.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    last = io.core.on_caller_stream_end(frames, trio.current_time())
    if last is None:
        return
    try:
        await upstream.send(last.event)
    except CallEnded as lost:
        # The session went away during cleanup: nothing more can reach it.
        log_tagged("DEBUG", "UPSTREAM_CLOSED", f"last caller audio not sent: {lost.end}")


def _leaf_exceptions(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaf_exceptions(sub)]
    return [exc]


async def _finish(io: CallIO) -> None:
    """Steps 3 and 4 of cleanup: end the Twilio leg, then the one ``CALL_END`` line."""
    services = io.services
    end = io.ended_by or CallEnd(
        EndReason.SERVER_SHUTDOWN if services.draining else EndReason.CANCELLED
    )
    io.ended_by = io.handle.end = end
    io.core.on_call_ending()
    with trio.move_on_after(TWILIO_CLOSE_S):
        await io.twilio.close(1000 if end.reason.is_normal else 1011, str(end))
    hangup = "not configured"
    if services.rest is not None and not end.reason.is_normal:
        with trio.move_on_after(REST_HANGUP_S) as waited:
            result = await services.rest.hang_up(io.core.call_sid)
            hangup = result.detail
            services.metrics.rest_hangup(result.ok)
        if waited.cancelled_caught:
            hangup = f"timed out after {REST_HANGUP_S:g}s"
            services.metrics.rest_hangup(False)
    elif services.rest is not None:
        hangup = (
            "skipped (Twilio ended the stream)"
            if end.reason is EndReason.TWILIO_STOP
            else f"done by {end.reason.value} (see CALL_EXIT)"
        )
    statistics = io.core.statistics()
    # No checkpoint from here on: the call leaves the live set and its counts join the
    # ended totals in one step, so /metrics never counts them twice or not at all.
    services.registry.remove(io.handle)
    services.metrics.call_ended(end, statistics)
    record = CallFinished(
        reason=end.reason.value,
        detail=end.detail,
        duration_s=round(trio.current_time() - io.started_at, 3),
        rest_hangup=hangup,
        noise_floor_dbfs=io.core.floor_dbfs,
        statistics=statistics.as_dict(),
    )
    log_action(report("INFO" if end.reason.is_normal else "WARNING", record))
    io.handle.ended.set()
    await io.app.finish(
        CallEndedEvent(record.reason, record.detail, record.duration_s, record.statistics)
    )


async def run_call(services: Services, leg: TwilioLeg) -> None:
    """Serve one Twilio stream until the call ends. Raises only ``trio.Cancelled``."""
    start = await _wait_for_start(leg, services.config.start_timeout_s)
    if start is None:
        with trio.move_on_after(TWILIO_CLOSE_S, shield=True):
            await leg.close(1008, "no start message")
        return
    io = CallIO(services, leg, start)
    with logger.contextualize(call_sid=start.call_sid, stream_sid=start.stream_sid):
        services.metrics.call_started()
        services.registry.add(io.handle)
        log_tagged(
            "INFO",
            "CALL_START",
            f"stream {start.stream_sid} params={dict(start.custom_parameters)}",
        )
        io.app.emit(CallStarted(dict(start.custom_parameters)))
        try:
            unsupported = start.unsupported_media_format()
            if unsupported is not None:
                io.end(CallEnd(EndReason.TWILIO_MEDIA_FORMAT, unsupported))
            else:
                await _run(io)
        except Exception as exc:  # noqa: BLE001 - the call boundary: one call's bug ends one call
            leaves = _leaf_exceptions(exc)
            known = [leaf for leaf in leaves if isinstance(leaf, CallEnded)]
            if len(known) == len(leaves):
                io.end(known[0].end)
            else:
                bug = next(leaf for leaf in leaves if not isinstance(leaf, CallEnded))
                io.end(CallEnd(EndReason.INTERNAL_ERROR, f"{type(bug).__name__}: {bug}"))
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
                reason = EndReason.TWILIO_DISCONNECTED_BEFORE_START.value
                log_tagged("WARNING", "CALL_END", f"reason={reason}")
                return None
            event = twilio.parse_twilio_message(data)
            if isinstance(event, twilio.Start):
                return event
            if not isinstance(event, twilio.Connected):
                log_tagged(
                    "WARNING", "TWILIO_EARLY", f"{type(event).__name__} before start ignored"
                )
    reason = EndReason.TWILIO_START_TIMEOUT.value
    log_tagged("WARNING", "CALL_END", f"reason={reason} no start within {timeout_s:g}s")
    return None
