"""One scenario end to end: the simulated upstream here, the bridge as a child process, the
planned calls, and what each side recorded.

Process layout (2 cores): the simulated Realtime upstream and the simulated Twilio callers
run in this process, both on ``time.monotonic``, so the sim's records and what the callers
sent and heard share one clock; the bridge runs as ``bridge serve`` and only reports
durations it measured itself. A third process for the sim was considered and measured
against: the sim and the callers together cost about as much CPU per call as the bridge,
so on 2 cores the machine, not the layout, is the limit near 40 calls. Each scenario
therefore reports CPU per process, other processes' CPU and the bench loop's lag, and
:func:`measurement_validity` flags a run that was not clean.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic

import trio
from loguru import logger

from bench.common.bridge_log import LogLine, read_log
from bench.common.bridge_process import bridge_process, wait_call_ends
from bench.common.calls import CallRun, P, make_call, monitor_lag, receive_stamp, run_calls
from bench.common.cpu import OTHER_PROCESSES, Pid, cpu_snapshot, cpu_usage, processes
from bench.common.stats import stats
from bridge.core.marks import parse_mark_name
from bridge.sim.arrival import kernel_stamping
from bridge.sim.upstream import SimSession, SimUpstream, SimUpstreamOptions
from bridge.sim.upstream_session import warm_reply_audio

CALL_END_TIMEOUT_S: Final = 15.0
WARM_RESPONSES: Final = 24
"""Responses per session whose audio is synthesised before a scenario is measured: more
than any bench's call asks for (a greeting, then one per turn or barge-in)."""
SESSION_CLOSE_TIMEOUT_S: Final = 5.0

BRIDGE: Final = "bridge"
BENCH: Final = "bench (sim + callers)"

MAX_BENCH_LAG_P95_MS: Final = 5.0
MAX_LATE_FRAME_SHARE: Final = 0.01
OTHER_LOAD_WARN_PCT: Final = 10.0
"""Warn when processes other than ours used more than this share of a core."""
MAX_MACHINE_BUSY_SHARE: Final = 0.7


def layout() -> dict[str, str]:
    """For the JSON report's ``config``: where each part ran, which clock the records use and
    when a message counts as received by the callers and the sim (:func:`receive_stamp`)."""
    return {
        "layout": "bridge: child process (bridge serve); sim upstream + callers: this process",
        "clock": "time.monotonic (sim and callers)",
        "receive_stamp": receive_stamp(),
    }


SIM_PACING_FIELDS: Final = (
    "reply_ms",
    "generation_speed",
    "delta_ms",
    "first_delta_delay_ms",
    "late_deltas_after_cancel",
    "vad_onset_ms",
)


def bench_sim_options(**pacing: Any) -> SimUpstreamOptions:
    """The simulated upstream of a bench: loopback, any free port, on ``time.monotonic``
    (the callers' clock), receipts stamped as :func:`receive_stamp` says, with the bench's
    ``pacing`` (:class:`SimUpstreamOptions` fields)."""
    return SimUpstreamOptions(
        host="127.0.0.1",
        port=0,
        clock=time.monotonic,
        stamp_arrivals=receive_stamp() == "arrival",
        **pacing,
    )


def sim_config(options: SimUpstreamOptions) -> dict[str, Any]:
    """How the simulated model answers, for the JSON report's ``config.sim``."""
    return {name: getattr(options, name) for name in SIM_PACING_FIELDS}


@dataclass(slots=True)
class ScenarioData(Generic[P]):
    """Raw observations of one scenario."""

    name: str
    settings: dict[str, str]
    """The ``BRIDGE_*`` variables the bench set for the bridge."""
    sim_options: SimUpstreamOptions
    runs: list[CallRun[P]]
    sessions: list[SimSession]
    log: list[LogLine]
    cpu: dict[str, Any]
    """:func:`bench.common.cpu.cpu_usage` over the calls."""
    log_path: Path
    calls_ended_in_bridge: int
    bench_loop_lag_ms: list[float]
    wall_minus_monotonic_s: float
    """``time.time() - time.monotonic()``: maps the bridge's log timestamps (wall clock) onto
    the sim's and callers' clock (to ~1 ms; only used to split a path into legs)."""


async def run_scenario(
    name: str,
    plans: Sequence[P],
    *,
    sequential: bool,
    sim_options: SimUpstreamOptions,
    settings: Mapping[str, str],
    out_dir: Path,
    log_name: str,
) -> ScenarioData[P]:
    """Run ``plans`` against a fresh bridge (with ``settings``) and a fresh sim upstream;
    the bridge's log goes to ``out_dir / log_name``."""
    sim = SimUpstream(sim_options)
    warm_reply_audio(sim_options.session_settings(), WARM_RESPONSES)
    log_path = out_dir / log_name
    wall_minus_mono = time.time() - time.monotonic()
    async with AsyncExitStack() as stamping:
        if sim_options.stamp_arrivals and not await stamping.enter_async_context(
            kernel_stamping()
        ):
            logger.warning("the kernel stamps no received packet: messages are timed at read")
        async with trio.open_nursery() as nursery:
            sim_url: str = await nursery.start(sim.serve)
            async with bridge_process(sim_url, log_path, settings) as bridge:
                runs = [make_call(plan, bridge.media_url, i) for i, plan in enumerate(plans)]
                pids: dict[str, Pid] = {BRIDGE: bridge.pid, BENCH: "self"}
                lag: list[float] = []
                monitor = trio.CancelScope()
                nursery.start_soon(monitor_lag, lag, monitor)
                before = cpu_snapshot(pids)
                await run_calls(runs, sequential=sequential)
                monitor.cancel()
                ended = await wait_call_ends(
                    log_path, {p.call_sid for p in plans}, CALL_END_TIMEOUT_S
                )
                # A session's records are complete once its socket has closed.
                with trio.move_on_after(SESSION_CLOSE_TIMEOUT_S):
                    for session in sim.sessions:
                        await session.closed.wait()
                after = cpu_snapshot(pids)
            nursery.cancel_scope.cancel()
    return ScenarioData(
        name=name,
        settings=dict(settings),
        sim_options=sim_options,
        runs=runs,
        sessions=list(sim.sessions),
        log=read_log(log_path),
        cpu=cpu_usage(before, after),
        log_path=log_path,
        calls_ended_in_bridge=ended,
        bench_loop_lag_ms=lag,
        wall_minus_monotonic_s=wall_minus_mono,
    )


def sessions_by_call(data: ScenarioData[P]) -> dict[str, SimSession | None]:
    """The sim session each call's bridge opened, by call SID: the one whose response items
    the caller's marks name most often (``None`` if no mark named any)."""
    item_session: dict[str, SimSession] = {}
    for session in data.sessions:
        for response in session.responses.values():
            for item_id in response.items:
                item_session[item_id] = session
    matched: dict[str, SimSession | None] = {}
    for run in data.runs:
        votes: dict[int, int] = {}
        chosen: dict[int, SimSession] = {}
        for event in run.playback.wire:
            parsed = parse_mark_name(event.name) if event.kind == "mark" else None
            named = item_session.get(parsed.item_id) if parsed is not None else None
            if named is not None:
                votes[named.index] = votes.get(named.index, 0) + 1
                chosen[named.index] = named
        best = max(votes, key=lambda i: votes[i]) if votes else None
        matched[run.plan.call_sid] = chosen[best] if best is not None else None
    return matched


def call_seconds(data: ScenarioData[P]) -> float:
    """The calls' summed durations (s), each from the caller's connect to its end."""
    return sum(r.report.duration_ms for r in data.runs if r.report is not None) / 1000.0


def bench_loop_lag(data: ScenarioData[P]) -> dict[str, Any]:
    """:func:`bench.common.stats.stats` of the bench loop's lag (ms), and the share of
    samples over 5 ms."""
    lag = data.bench_loop_lag_ms
    share = round(sum(1 for v in lag if v > 5.0) / len(lag), 4) if lag else None
    return {**stats(lag), "share_over_5ms": share}


def measurement_validity(data: ScenarioData[P]) -> dict[str, Any]:
    """Whether the load generator and the machine kept up, so a miss is the bridge's.

    The simulated callers send real-time media and model playback on their own loop: when
    this process lags, they hear (and report) the bridge's audio late, and their frames reach
    the bridge late. Another process using the cores does the same to both sides.
    """
    reasons: list[str] = []
    lag_p95 = bench_loop_lag(data)["p95"]
    if lag_p95 is not None and lag_p95 > MAX_BENCH_LAG_P95_MS:
        reasons.append(f"bench loop lag p95 {lag_p95:.1f} ms > {MAX_BENCH_LAG_P95_MS:g} ms")
    reports = [r.report for r in data.runs if r.report is not None]
    sent = sum(r.media_sent for r in reports)
    late = sum(r.late_frames for r in reports)
    if sent and late / sent > MAX_LATE_FRAME_SHARE:
        reasons.append(
            f"callers sent {100 * late / sent:.1f}% of frames > 5 ms late "
            f"(> {100 * MAX_LATE_FRAME_SHARE:g}%)"
        )
    cpu = data.cpu
    other = cpu[OTHER_PROCESSES]["pct_of_one_core"]
    if other is not None and other > OTHER_LOAD_WARN_PCT:
        reasons.append(f"other processes used {other:.0f}% of a core")
    wall = float(cpu["wall_s"])
    busy = sum(float(v["cpu_s"]) for v in processes(cpu).values())
    cores = int(cpu.get("cores") or 1)
    if wall > 0 and busy / (wall * cores) > MAX_MACHINE_BUSY_SHARE:
        reasons.append(
            f"machine {100 * busy / (wall * cores):.0f}% busy on average over {cores} cores"
        )
    return {"valid": not reasons, "reasons": reasons}
