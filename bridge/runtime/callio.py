"""The runtime side of one call: its resources (:class:`CallIO`) and how the core's actions
are executed (:func:`apply_local` by any task, :func:`execute` by tasks that may write
upstream). The tasks themselves are in :mod:`bridge.runtime.call` and
:mod:`bridge.runtime.session`.

Tasks that send upstream do it through :attr:`CallIO.upstream`, the current session: a send
that finds the session gone is dropped (the core keeps what matters, audio and notes, for
the next session) and the loss is reported to the supervisor.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import assert_never

import trio

from bridge.core import twilio
from bridge.core.actions import (
    Action,
    BargeIn,
    DropUpstream,
    EndCall,
    LocalAction,
    Log,
    QueueCallerAudio,
    SendUpstream,
    ToApp,
    WakeTx,
)
from bridge.core.call import CallCore, TxSend, TxWait
from bridge.core.ending import CallEnd
from bridge.core.realtime_client import ClientEvent
from bridge.core.records import BargeInReport, UpstreamRestored, read_record, report
from bridge.errors import UpstreamLost
from bridge.logs import log_action, log_tagged
from bridge.runtime.app_link import AppLink
from bridge.runtime.registry import NOTES_CHANNEL_SIZE, CallHandle, NoteRequest
from bridge.runtime.services import Services
from bridge.runtime.twilio_leg import TwilioLeg
from bridge.runtime.upstream import Upstream
from bridge.runtime.websocket import WritableCheck

INBOUND_QUEUE_FRAMES = 50


class CallIO:
    """Runtime resources of one call. Every field is set here; ``__slots__`` forbids others."""

    __slots__ = (
        "_writable",
        "app",
        "core",
        "doorbell_recv",
        "doorbell_send",
        "ended_by",
        "frames_at_gate",
        "handle",
        "inbound_recv",
        "inbound_send",
        "notes_recv",
        "scope",
        "services",
        "session_end",
        "session_scope",
        "started_at",
        "timer_at",
        "timer_bell_recv",
        "timer_bell_send",
        "twilio",
        "tx_wake_at",
        "upstream",
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
        self.upstream: Upstream | None = None
        """The current Realtime session, or ``None`` while there is none (set-up, healing)."""
        self.session_scope: trio.CancelScope | None = None
        self.session_end: CallEnd | None = None
        """Why the current session is being given up (the first reason wins)."""
        self.inbound_send, self.inbound_recv = trio.open_memory_channel[twilio.Media](
            INBOUND_QUEUE_FRAMES
        )
        self._writable = WritableCheck()
        """Asks whether both sockets take bytes now, in one system call."""
        self.frames_at_gate = 0
        """Caller frames handed to the gate task that it has not finished with: queued in
        ``inbound``, handed straight to the waiting task (a memory channel does that without
        queueing), or in its hands."""
        self.doorbell_send, self.doorbell_recv = trio.open_memory_channel[None](1)
        self.timer_bell_send, self.timer_bell_recv = trio.open_memory_channel[None](1)
        self.timer_at = math.inf
        self.tx_wake_at = -math.inf
        """The time the TX writer sleeps until; ``-inf`` while it is not asleep. A task that
        leaves audio for later rings the doorbell only if it is due before that: the writer
        polls when it wakes anyway, and a ring it does not need is a task wake-up per
        delta."""
        """The deadline the timers task sleeps until."""
        notes_send, self.notes_recv = trio.open_memory_channel[NoteRequest](NOTES_CHANNEL_SIZE)
        self.handle = CallHandle(self.core, notes_send, now)
        self.app = AppLink(services, self.core)
        """Tool requests, exits and call events (:mod:`bridge.runtime.app_link`)."""

    def end(self, end: CallEnd) -> None:
        """End the call; the first end wins."""
        if self.ended_by is None:
            self.ended_by = end
        self.scope.cancel()

    def lose_session(self, end: CallEnd) -> None:
        """Give up the current upstream session (the supervisor heals or ends the call)."""
        if self.session_scope is None:
            return
        if self.session_end is None:
            self.session_end = end
        self.session_scope.cancel()

    def ring_doorbell(self) -> None:
        # A full doorbell already holds a pending ring: one is enough.
        with contextlib.suppress(trio.WouldBlock):
            self.doorbell_send.send_nowait(None)

    def check_timers(self) -> None:
        """Wake the timers task if the core's next deadline moved before its sleep's end."""
        deadline = self.core.next_deadline()
        if deadline is not None and deadline < self.timer_at:
            with contextlib.suppress(trio.WouldBlock):
                self.timer_bell_send.send_nowait(None)

    def gate_can_run_inline(self) -> bool:
        """Whether the Twilio reader may run the gate stage on a caller frame itself, in the
        step that read it, instead of handing it to the gate task (a wake-up of a second task
        per frame, about half the task steps of a call).

        Only when nothing it would do can wait, so the reader never stalls behind a socket
        (mark echoes and the next frames would wait with it), and only when the frame is
        next in line: no frame queued for the gate task or in its hands (every frame goes
        through the gate once, in order), no further Twilio message already read (a burst
        goes to the gate task, which sends it as one append), a session to send to whose
        socket takes bytes now and has no other sender, and a Twilio leg that takes bytes
        now with its lock free (a barge-in writes its ``clear`` there). Both sockets are
        asked in one ``poll`` system call."""
        upstream = self.upstream
        if upstream is None or self.frames_at_gate != 0 or self.twilio.has_pending:
            return False
        upstream_fd = upstream.send_fd()
        twilio_fd = self.twilio.write_fd()
        return (
            upstream_fd is not None
            and twilio_fd is not None
            and self._writable.all_take_bytes((upstream_fd, twilio_fd))
        )

    def push_inbound(self, media: twilio.Media) -> None:
        """Queue caller audio for the gate; when full, drop the oldest frame and count it."""
        while True:
            try:
                self.inbound_send.send_nowait(media)
                self.frames_at_gate += 1
                return
            except trio.WouldBlock:
                self.inbound_recv.receive_nowait()
                self.frames_at_gate -= 1
                self.core.on_caller_audio_dropped()

    def take_inbound(self) -> list[twilio.Media]:
        """Every caller frame queued for the gate, taken now (none: an empty list)."""
        frames: list[twilio.Media] = []
        while True:
            try:
                frames.append(self.inbound_recv.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return frames


# -- executing core actions ---------------------------------------------------------------


def apply_local(io: CallIO, actions: Sequence[LocalAction]) -> None:
    """Execute actions that need no socket (any task may)."""
    for action in actions:
        _apply_local(io, action)
    io.check_timers()


def _apply_local(io: CallIO, action: LocalAction) -> None:
    match action:
        case WakeTx():
            io.ring_doorbell()
        case Log():
            log_action(action)
            if action.tag == UpstreamRestored.TAG:
                record = read_record(UpstreamRestored, {"tag": action.tag, **action.fields})
                if record is not None:
                    io.services.metrics.upstream_restored(record.gap_ms / 1000.0)
        case EndCall(end=end):
            io.end(end)
        case QueueCallerAudio(media=media):
            io.push_inbound(media)
        case DropUpstream(end=end):
            io.lose_session(end)
        case ToApp(work=work):
            io.app.accept(work)
        case _:
            assert_never(action)


async def execute(io: CallIO, actions: Sequence[Action]) -> None:
    """Execute any action, in order (tasks that may write upstream)."""
    await _execute(io, actions)
    io.check_timers()


async def _execute(io: CallIO, actions: Sequence[Action]) -> None:
    for action in actions:
        match action:
            case SendUpstream(event=event):
                await send_upstream(io, event)
            case BargeIn():
                await _barge_in(io, action)
            case WakeTx():
                await _send_due_audio(io)
            case Log() | EndCall() | QueueCallerAudio() | DropUpstream() | ToApp():
                _apply_local(io, action)
            case _:
                assert_never(action)


async def execute_from_twilio(io: CallIO, actions: Sequence[LocalAction], now: float) -> None:
    """Execute the Twilio reader's actions (``now``: when their frame was read). Caller
    audio goes through the gate stage right here when :meth:`CallIO.gate_can_run_inline`
    allows it, and to the gate task otherwise."""
    for action in actions:
        if isinstance(action, QueueCallerAudio) and io.gate_can_run_inline():
            await _execute(io, io.core.on_caller_frames((action.media,), now))
        else:
            _apply_local(io, action)
    io.check_timers()


async def send_upstream(io: CallIO, event: ClientEvent) -> None:
    upstream = io.upstream
    if upstream is None:
        # The session went away after the core decided to send: the core keeps what the
        # next session needs (caller audio, notes), so the event itself is dropped.
        log_tagged("DEBUG", "UPSTREAM_GONE", f"{event.TYPE} not sent: no session")
        return
    try:
        await upstream.send(event)
    except UpstreamLost as lost:
        io.lose_session(lost.end)


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
        frames: list[str] = []
        while isinstance(decision := io.core.tx_poll(trio.current_time()), TxSend):
            frames += decision.messages
        if frames:
            await leg.write(*frames)
    finally:
        leg.lock.release()
    if isinstance(decision, TxWait) and decision.until < io.tx_wake_at:
        io.ring_doorbell()


async def _barge_in(io: CallIO, plan: BargeIn) -> None:
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
        await send_upstream(io, event)
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
