"""The upstream of a call: one Realtime session at a time, healed when lost, renewed in time.

:func:`supervise_upstream` is a task of the call. It opens a session and runs it in a cancel
scope of its own, with its two tasks: the **OpenAI reader** (reads the socket, hands each
event to the core, executes what the core decides) and the **heartbeat** (a ping unanswered
for ``heartbeat_timeout_s`` is a stall). When the session is lost (a close with any code, a
reset, a stall, a response that stopped streaming, a session that is not confirmed in
time, a stream of events that cannot be parsed), only that scope ends: the Twilio leg
and the rest of the call live on, the audio already received keeps playing, the caller's
audio waits in the core, and the supervisor opens a new session within the reconnect
budget (:mod:`bridge.core.reconnect`). The core gives the new session the conversation and
the turn (:meth:`bridge.core.call.CallCore.on_upstream_open`). What cannot heal ends the
call as before: a handshake the server refuses for good (HTTP 400/401/403/404), a session
it rejects, a fatal error code, or a spent budget (``openai_lost``; the fallback plays).

Before the service's 60-minute cap the session is **recycled**: after ``session_recycle_s``
the next connection is opened beside it, and at the first turn boundary (nobody speaking,
nothing playing, no reply owed) the call switches to it, so nobody hears the change.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import trio

from bridge.core import realtime as rt
from bridge.core.ending import CallEnd, EndReason
from bridge.core.reconnect import ReconnectBudget
from bridge.errors import UpstreamLost, UpstreamUnavailable
from bridge.logs import log_tagged
from bridge.runtime.callio import CallIO, apply_local, execute
from bridge.runtime.upstream import Upstream, connect_upstream

UPSTREAM_CLOSE_S = 0.5
SESSION_CAP_S = 3600.0
"""The Realtime service ends a session after 60 minutes."""
RECYCLE_LATEST_S = SESSION_CAP_S - 30.0
"""A recycle that found no turn boundary switches anyway by then, before the cap does."""
RECYCLE_POLL_S = 0.1
"""How often a due recycle looks for a turn boundary (only while one is due)."""
STANDBY_RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class _SessionOutcome:
    lost: CallEnd | None
    """Why the session was given up, if it was lost."""
    replacement: Upstream | None
    """The session that took over at a recycle (already configured)."""


async def supervise_upstream(io: CallIO) -> None:
    config, core = io.services.config, io.core
    budget = ReconnectBudget(
        config.reconnect_attempts, config.reconnect_window_s, random.Random(core.call_sid)
    )
    next_upstream: Upstream | None = None
    last_loss: CallEnd | None = None
    while True:
        configured = next_upstream is not None
        if next_upstream is None:
            if last_loss is not None:
                await trio.sleep(budget.backoff_s())
                if not budget.try_now(trio.current_time()):
                    detail = (
                        f"{last_loss}; {config.reconnect_attempts} reconnect attempt(s) in "
                        f"{config.reconnect_window_s:g} s did not heal it"
                    )
                    io.end(CallEnd(EndReason.OPENAI_LOST, detail))
                    return
                core.on_reconnect_attempt()
            try:
                next_upstream = await connect_upstream(
                    io.services.upstream_url,
                    config.openai_api_key,
                    timeout_s=config.session_timeout_s,
                )
            except UpstreamUnavailable as exc:
                failed = CallEnd(EndReason.OPENAI_HANDSHAKE_FAILED, str(exc))
                if not exc.retryable or config.reconnect_attempts == 0:
                    io.end(failed)
                    return
                apply_local(io, core.on_upstream_lost(trio.current_time(), failed))
                last_loss = failed
                continue
        outcome = await _run_session(io, next_upstream, budget, configured=configured)
        next_upstream = outcome.replacement
        if next_upstream is not None:
            continue
        lost = outcome.lost
        if lost is None:
            return
        if not lost.reason.upstream_can_heal or config.reconnect_attempts == 0:
            io.end(lost)
            return
        apply_local(io, core.on_upstream_lost(trio.current_time(), lost))
        last_loss = lost


async def _run_session(
    io: CallIO, upstream: Upstream, budget: ReconnectBudget, *, configured: bool
) -> _SessionOutcome:
    """Run one session until it is lost, replaced, or the call ends; then close it."""
    config, core = io.services.config, io.core
    scope = trio.CancelScope()
    io.upstream, io.session_scope, io.session_end = upstream, scope, None
    replacement: Upstream | None = None
    try:
        with scope:
            async with trio.open_nursery() as session:
                sid = core.call_sid
                ready = trio.Event()
                session.start_soon(_openai_reader, io, upstream, ready, name=f"openai_reader:{sid}")
                session.start_soon(_heartbeat, io, upstream, name=f"upstream_heartbeat:{sid}")
                if not configured:
                    await execute(io, core.on_upstream_open(trio.current_time()))
                with trio.move_on_after(config.session_timeout_s):
                    await ready.wait()
                if ready.is_set():
                    budget.healed()
                    replacement = await _recycle_when_due(io)
                else:
                    detail = f"no session.updated in {config.session_timeout_s:g}s"
                    io.lose_session(CallEnd(EndReason.OPENAI_SESSION_TIMEOUT, detail))
                scope.cancel()
    except* UpstreamLost as group:
        if io.session_end is None:
            first = group.exceptions[0]
            assert isinstance(first, UpstreamLost)
            io.session_end = first.end
    finally:
        if io.upstream is upstream:
            io.upstream = None
        io.session_scope = None
        end = io.session_end
        grace = 0 if end is not None and end.reason.upstream_is_stalled else UPSTREAM_CLOSE_S
        with trio.move_on_after(grace, shield=True):
            if io.scope.cancel_called and _caller_side_end(io):
                await _send_remaining_caller_audio(io, upstream)
            await upstream.aclose()
    return _SessionOutcome(io.session_end, replacement)


def _caller_side_end(io: CallIO) -> bool:
    reason = io.ended_by.reason if io.ended_by is not None else EndReason.CANCELLED
    return reason.upstream_can_take_audio


async def _openai_reader(io: CallIO, upstream: Upstream, ready: trio.Event) -> None:
    core = io.core
    while True:
        data = await upstream.receive()
        event = rt.parse_realtime_event(data)
        await execute(io, core.on_realtime_event(event, trio.current_time()))
        if not ready.is_set() and core.session_ready:
            ready.set()


async def _heartbeat(io: CallIO, upstream: Upstream) -> None:
    """Ping the service once it has been quiet for half of ``heartbeat_interval_s`` (while
    events stream, they show it is alive); a ping unanswered for ``heartbeat_timeout_s`` is a
    stall. A stall is so found at most 1.5 s after the service's last sign of life (with the
    1 s default), at the cost of about two pings a second while the session is idle."""
    config = io.services.config
    quiet_s = config.heartbeat_interval_s / 2
    while True:
        quiet_until = upstream.last_received_at + quiet_s
        if trio.current_time() < quiet_until:
            await trio.sleep_until(quiet_until)
            continue
        with trio.move_on_after(config.heartbeat_timeout_s) as waited:
            await upstream.ping()
        if waited.cancelled_caught:
            detail = f"no pong within {config.heartbeat_timeout_s:g}s"
            io.lose_session(CallEnd(EndReason.OPENAI_STALL, detail))
            return


async def _recycle_when_due(io: CallIO) -> Upstream:
    """Once ``session_recycle_s`` has passed: the next session, opened beside this one and
    configured at the first turn boundary (or at :data:`RECYCLE_LATEST_S`)."""
    config, core = io.services.config, io.core
    opened_at = trio.current_time()
    await trio.sleep(config.session_recycle_s)
    standby: Upstream | None = None
    while standby is None:
        try:
            standby = await connect_upstream(
                io.services.upstream_url, config.openai_api_key, timeout_s=config.session_timeout_s
            )
        except UpstreamUnavailable as exc:
            log_tagged("WARNING", "RECYCLE_DEFERRED", f"next session not opened yet: {exc}")
            await trio.sleep(STANDBY_RETRY_S)
    with trio.move_on_at(opened_at + RECYCLE_LATEST_S):
        # Polled: the boundary is a conjunction of several of the core's states, and this
        # runs once an hour for a few seconds at most.
        while not core.at_turn_boundary:  # noqa: ASYNC110
            await trio.sleep(RECYCLE_POLL_S)
    io.upstream = standby
    await execute(io, core.on_upstream_open(trio.current_time()))
    return standby


async def _send_remaining_caller_audio(io: CallIO, upstream: Upstream) -> None:
    """Caller frames still queued for the gate, and its hold, in one last append."""
    frames = io.take_inbound()
    io.frames_at_gate -= len(frames)
    last = io.core.on_caller_stream_end(frames, trio.current_time())
    if last is None:
        return
    try:
        await upstream.send(last.event)
    except UpstreamLost as lost:
        # The session went away during cleanup: nothing more can reach it.
        log_tagged("DEBUG", "UPSTREAM_CLOSED", f"last caller audio not sent: {lost.end}")
