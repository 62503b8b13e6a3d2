"""Simulated Twilio calls against the bridge: one caller per planned call, run in real time.

A plan (any :class:`PlannedCall`) says who calls, what the caller says and when it starts;
:func:`run_calls` runs them one at a time or all together and bounds the run, since an
overloaded machine makes callers fall behind real time (they catch up instead of dropping
frames) and their own ``max_duration_s`` alone would not end it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

import trio

from bench.common.wire import SentMedia, WirePlayback
from bridge.sim.caller import CallerConnectError, CallerOptions, SimCaller
from bridge.sim.report import CallerReport
from bridge.sim.script import CallerScript

RECEIVE_STAMP_VARIABLE: Final = "BENCH_RECEIVE_STAMP"
"""``arrival`` (the default): the callers time each bridge message, and the sim each message
from the bridge, by when it reached their socket (the kernel's receive time), as Twilio would
start to play it and the service take it in; ``read``: when the task read it, which adds this
process's loop lag to every figure (the benches' definition before 2026-12-03)."""
RECEIVE_STAMPS: Final = ("arrival", "read")

HANGUP_GRACE_S: Final = 5.0
"""After the scenario deadline hangs up the stragglers, how long before they are cancelled."""


class PlannedCall(Protocol):
    @property
    def call_sid(self) -> str: ...

    @property
    def start_after_s(self) -> float:
        """Delay (s) from the scenario's start to this call's."""
        ...

    @property
    def max_duration_s(self) -> float: ...

    def script(self, seed_base: int) -> CallerScript: ...


P = TypeVar("P", bound=PlannedCall)


@dataclass(slots=True)
class CallRun(Generic[P]):
    plan: P
    caller: SimCaller
    playback: WirePlayback
    sent: SentMedia
    report: CallerReport | None = None
    error: str | None = None


def receive_stamp() -> str:
    """What :data:`RECEIVE_STAMP_VARIABLE` chooses; raises :class:`ValueError` for anything
    but :data:`RECEIVE_STAMPS`."""
    chosen = os.environ.get(RECEIVE_STAMP_VARIABLE) or RECEIVE_STAMPS[0]
    if chosen not in RECEIVE_STAMPS:
        raise ValueError(f"{RECEIVE_STAMP_VARIABLE} must be one of {RECEIVE_STAMPS}: {chosen!r}")
    return chosen


def make_call(plan: P, media_url: str, index: int) -> CallRun[P]:
    """A caller for ``plan``: real-time media on ``time.monotonic``, every frame logged,
    bridge messages stamped as :func:`receive_stamp` says."""
    sent = SentMedia()
    caller = SimCaller(
        CallerOptions(
            url=media_url,
            script=plan.script(seed_base=100 * index),
            call_sid=plan.call_sid,
            max_duration_s=plan.max_duration_s,
            clock=time.monotonic,
            stamp_arrivals=receive_stamp() == "arrival",
            on_media_sent=sent.record,
        )
    )
    playback = WirePlayback()
    caller.playback = playback
    return CallRun(plan, caller, playback, sent)


async def _run_one(run: CallRun[P]) -> None:
    await trio.sleep(run.plan.start_after_s)
    try:
        run.report = await run.caller.run()
    except CallerConnectError as exc:
        run.error = str(exc)


async def _run_with_deadline(runs: Sequence[CallRun[P]], deadline_s: float) -> None:
    """Run ``runs`` concurrently; at ``deadline_s`` hang up the stragglers, a little later
    cancel them."""
    async with trio.open_nursery() as outer:
        calls_scope = trio.CancelScope()

        async def watchdog() -> None:
            await trio.sleep(deadline_s)
            for run in runs:
                if run.report is None:
                    run.caller.hangup()
            await trio.sleep(HANGUP_GRACE_S)
            calls_scope.cancel()

        outer.start_soon(watchdog)
        with calls_scope:
            async with trio.open_nursery() as calls:
                for run in runs:
                    calls.start_soon(_run_one, run)
        for run in runs:
            if run.report is None and run.error is None:
                run.error = "cancelled at the scenario deadline"
        outer.cancel_scope.cancel()


async def run_calls(runs: Sequence[CallRun[P]], *, sequential: bool) -> None:
    if sequential:
        for run in runs:
            await _run_with_deadline([run], run.plan.max_duration_s + 10.0)
        return
    deadline = max(r.plan.start_after_s + r.plan.max_duration_s for r in runs) + 5.0
    await _run_with_deadline(runs, deadline)


LAG_PERIOD_S: Final = 0.01


async def monitor_lag(samples: list[float], scope: trio.CancelScope) -> None:
    """How late this process's Trio loop wakes a 10 ms sleeper (ms): the load generator's
    own lag, which delays the callers' view of the wire (and so what they "hear")."""
    with scope:
        while True:
            start = time.monotonic()
            await trio.sleep(LAG_PERIOD_S)
            samples.append(max(0.0, (time.monotonic() - start - LAG_PERIOD_S) * 1000.0))
