"""One phone call: one Trio nursery, from the Twilio stream's ``start`` to ``CALL_END``.

Tasks of the call (all in one nursery; the first failure cancels the others). They only
read, write, pace and supervise; every decision is the core's (:class:`CallCore`):

* **Twilio reader**: hands each Twilio frame to the core; ``stop`` or a socket close ends
  the call. Caller audio goes through the gate stage: in the reader itself, in the step
  that read the frame, when nothing that would do can wait (the frame is next in line,
  and the upstream socket and the Twilio leg take bytes now:
  :meth:`~bridge.runtime.callio.CallIO.gate_can_run_inline`); otherwise to the gate task
  over ``inbound`` (bounded: 50 frames = 1 s; when full the *oldest* frame is dropped and
  counted, because real-time audio must not stall the reader). The reader never waits on
  the upstream.
* **Upstream supervisor** (:mod:`bridge.runtime.session`): opens the Realtime session and,
  inside its own cancel scope, the **OpenAI reader** (hands each event to the core and
  executes its actions, barge-in included) and the heartbeat. When the session is lost it
  heals the call with a new one, within the reconnect budget; the rest of the call lives on.
* **Audio gate**: takes the caller frames waiting in ``inbound`` (all of them at once:
  one append) and writes what the core releases (``input_audio_buffer.append``, a local
  fast barge-in). It runs when the reader cannot: a burst, a busy socket, no session.
* **TX writer**: paces AI audio to Twilio as the core decides, a ``mark`` now and then;
  woken through ``doorbell`` (capacity 1: when full, a ring is already pending, so another
  is dropped; rings carry no data), and not rung for audio due after the time it already
  sleeps until (:attr:`~bridge.runtime.callio.CallIO.tx_wake_at`).
* **Timers**: the core's timers (a held barge-in's confirmation window, the hold phrase, the
  reply and media watchdogs), woken through ``timer_bell`` (capacity 1, like the doorbell)
  when a deadline moves earlier.
* **Notes pump** (``notes``: bounded control channel; senders wait) and the call limit.
* **Application link** (:mod:`bridge.runtime.app_link`): tool requests, exits (Twilio REST)
  and call events, fed by :class:`~bridge.core.actions.ToApp` actions through its bounded
  channels; its HTTP never runs in the OpenAI reader. The tools' timers (filler, exit cap)
  are the core's, served by the timers task.

Tasks that send upstream do it through the current session (:mod:`bridge.runtime.callio`).

Cleanup, in this fixed order, shielded and time-bounded, whatever ended the call:
stop audio (the tasks are gone: nothing more is written), close the OpenAI socket
(0.5 s, then abort), end the Twilio leg (close the stream so the TwiML fallback plays;
with Twilio credentials also hang up through REST, once), then one ``CALL_END`` line, then
``call.ended`` and the call events still queued go to the application (bounded in time).
"""

from __future__ import annotations

import math
from functools import partial

import trio
from loguru import logger

from bridge.core import twilio
from bridge.core.actions import Log
from bridge.core.call import TxSend, TxWait
from bridge.core.call_events import CallEnded as CallEndedEvent
from bridge.core.call_events import CallStarted
from bridge.core.ending import CallEnd, EndReason
from bridge.core.logsafe import start_parameters
from bridge.core.ratelimit import LogThrottle
from bridge.core.records import CallFinished, report
from bridge.errors import CallEnded
from bridge.logs import log_action, log_tagged
from bridge.runtime.callio import CallIO, execute, execute_from_twilio
from bridge.runtime.services import Services
from bridge.runtime.session import supervise_upstream
from bridge.runtime.twilio_leg import TwilioLeg

TWILIO_CLOSE_S = 0.5
REST_HANGUP_S = 3.0


# -- tasks ------------------------------------------------------------------------------


async def _twilio_reader(io: CallIO) -> None:
    core = io.core
    while True:
        data = await io.twilio.receive()
        if data is None:
            code = io.twilio.disconnect_code
            io.end(CallEnd(EndReason.TWILIO_DISCONNECTED, f"code={code}"))
            return
        now = trio.current_time()
        await execute_from_twilio(
            io, core.on_twilio_event(twilio.parse_twilio_message(data), now), now
        )


async def _gate_task(io: CallIO) -> None:
    async for frame in io.inbound_recv:
        # Under load frames queue up: take them all now and send one append for the lot
        # (same audio, same order, fewer messages).
        frames = [frame, *io.take_inbound()]
        try:
            await execute(io, io.core.on_caller_frames(frames, trio.current_time()))
        finally:
            io.frames_at_gate -= len(frames)


async def _tx_writer(io: CallIO) -> None:
    core, leg = io.core, io.twilio
    while True:
        async with leg.lock:
            decision = core.tx_poll(trio.current_time())
            if isinstance(decision, TxSend):
                await leg.write(*decision.messages)
        if isinstance(decision, TxSend):
            continue
        io.tx_wake_at = decision.until if isinstance(decision, TxWait) else math.inf
        with trio.move_on_at(io.tx_wake_at):
            await io.doorbell_recv.receive()
        io.tx_wake_at = -math.inf


async def _timers(io: CallIO) -> None:
    core = io.core
    while True:
        deadline = core.next_deadline()
        io.timer_at = math.inf if deadline is None else deadline
        with trio.move_on_at(io.timer_at):
            await io.timer_bell_recv.receive()
        io.timer_at = math.inf
        now = trio.current_time()
        if deadline is not None and now >= deadline:
            await execute(io, core.on_timer(now))


async def _notes_pump(io: CallIO) -> None:
    async for note in io.notes_recv:
        actions = io.core.submit_note(
            note.text,
            respond=note.respond,
            awaits_confirmation=note.awaits_confirmation,
            epoch=note.epoch,
        )
        await execute(io, actions)


async def _call_limit(io: CallIO) -> None:
    await trio.sleep(io.services.config.max_call_s)
    io.end(CallEnd(EndReason.MAX_CALL_DURATION))


# -- the call -----------------------------------------------------------------------------


async def _run(io: CallIO) -> None:
    with io.scope:
        async with trio.open_nursery() as call:
            sid = io.core.call_sid
            call.start_soon(_twilio_reader, io, name=f"twilio_reader:{sid}")
            call.start_soon(supervise_upstream, io, name=f"upstream_supervisor:{sid}")
            call.start_soon(_gate_task, io, name=f"audio_gate:{sid}")
            call.start_soon(_tx_writer, io, name=f"tx_writer:{sid}")
            call.start_soon(_timers, io, name=f"timers:{sid}")
            call.start_soon(_notes_pump, io, name=f"notes_pump:{sid}")
            call.start_soon(_call_limit, io, name=f"call_limit:{sid}")
            call.start_soon(io.app.run, partial(execute, io), name=f"app_link:{sid}")


def _leaf_exceptions(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaf_exceptions(sub)]
    return [exc]


async def _finish(io: CallIO) -> None:
    """Steps 3 and 4 of cleanup: end the Twilio leg, then the one ``CALL_END`` line; then the
    call events still owed go to the application, and only then is the call ``ended``."""
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
    await io.app.finish(
        CallEndedEvent(record.reason, record.detail, record.duration_s, record.statistics)
    )
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
        services.metrics.call_started()
        services.registry.add(io.handle)
        params = start_parameters(
            start.custom_parameters, show_phone_numbers=services.config.log_pii
        )
        log_tagged("INFO", "CALL_START", f"stream {start.stream_sid} params={params}")
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
    warnings = LogThrottle()
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
                kind = type(event).__name__
                early = Log("WARNING", "TWILIO_EARLY", f"{kind} before start ignored")
                for log in warnings.admit(early, trio.current_time()):
                    log_action(log)
    reason = EndReason.TWILIO_START_TIMEOUT.value
    log_tagged("WARNING", "CALL_END", f"reason={reason} no start within {timeout_s:g}s")
    return None
