"""Barge-in benchmark over real sockets: the bridge as its own process, simulated both ends.

Run from the project root::

    .venv/bin/python -m bench.bargein --out out/bench-bargein.json
    .venv/bin/python -m bench.bargein --scenario single --barge-ins-single 20
    .venv/bin/python -m bench.bargein --fast-barge-in duck

Process layout (2 cores): the bridge runs as ``bridge serve --log-format json`` in a child
process (its stderr goes to ``out/bench-bargein-<scenario>.log``); the simulated Realtime
upstream and the simulated Twilio callers run in this process, both on ``time.monotonic``, so
the sim's records and the callers' playback share one clock. The bridge only reports
durations it measured itself (``BARGE_IN clear_ms``). A third process for the sim was
considered and measured against: the sim and the callers together cost about as much CPU per
call as the bridge, so on 2 cores the machine, not the layout, is the limit near 40 calls
(each scenario reports CPU per process, other processes' CPU and the bench loop's lag, and
flags a run that was not clean).

Scenarios:

* ``single``: calls one at a time, each with up to 10 barge-ins (``--barge-ins-single``
  in total);
* ``concurrent``: ``--calls-concurrent`` callers started within 1.5 s, 1 to 3 barge-ins each.

Utterance ``k`` of a call (700 ms of synthetic speech) starts ``d_k`` ms after AI turn ``k``
starts playing at the caller (turn 1 is the greeting), so it cuts into turn ``k``; the cut-in
offsets ``d_k`` are spread evenly over 200..3000 ms and shuffled. The reply to the last
utterance plays to its end; the caller hangs up 500 ms later.

Metrics per barge-in (``k``-th utterance of a call; ``t_ss`` = when the sim wrote
``speech_started``; ``R`` = the responses created before the caller started utterance ``k``):

* ``reaction_ms``: the bridge's ``BARGE_IN clear_ms`` (``speech_started`` received → ``clear``
  written; for a local fast barge-in, local onset → ``clear``);
* ``heard_after_ms``: audio of ``R`` the caller played in ``[t_ss, clear received)``;
* ``late_audio_bytes``: media of ``R``'s items that reached the caller after that ``clear``
  (items attributed through the mark after each frame, ``g<gen>:m<seq>:<item_id>``);
* ``truncate_error_ms``: ``audio_end_ms`` of each ``conversation.item.truncate`` the sim
  received minus the ms of that item the caller heard;
* ``next_reply``: the first response created after ``t_ss`` was heard in full (last reply of
  a call), or without a gap from its start up to the next cut-in;
* ``pacing_gaps``: underruns inside one item at the caller (count, ms);
* CPU seconds of each process during the scenario, from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import httpx
import numpy as np
import trio
from loguru import logger

from bridge.config import ConfigError, load_config
from bridge.core.marks import parse_mark_name
from bridge.core.records import BargeInReport, BridgeReady, read_record
from bridge.sim.caller import CallerConnectError, CallerOptions, SimCaller
from bridge.sim.playback import ClearResult, TwilioPlayback
from bridge.sim.report import CallerReport, EventKind
from bridge.sim.script import AfterAiStarts, AfterReply, CallerScript, Utterance
from bridge.sim.upstream import SimSession, SimUpstream, SimUpstreamOptions

FastMode = Literal["off", "duck"]

# Simulated upstream: long replies to cut into, generated 4x faster than real time.
REPLY_MS: Final = 4000
GENERATION_SPEED: Final = 4.0
DELTA_MS: Final = 100
LATE_DELTAS_AFTER_CANCEL: Final = 2
FIRST_DELTA_DELAY_MS: Final = 250.0

UTTERANCE_MS: Final = 700
OFFSET_MIN_MS: Final = 200
OFFSET_MAX_MS: Final = 3000
BARGE_INS_PER_SINGLE_CALL: Final = 10
CONCURRENT_START_SPREAD_S: Final = 1.5
HANGUP_AFTER_REPLY_MS: Final = 500

READY_TIMEOUT_S: Final = 20.0
STOP_TIMEOUT_S: Final = 12.0
"""SIGTERM drains for up to 10 s (the bridge's graceful period) before we kill."""
CALL_END_TIMEOUT_S: Final = 15.0
REPLY_TOLERANCE_MS: Final = 2.0
"""Slack when comparing heard and expected ms (float sums, mark attribution)."""

TARGETS: Final[dict[str, dict[str, float]]] = {
    "single": {"reaction_p95_ms": 2.0},
    "concurrent": {"reaction_p95_ms": 10.0},
}
HEARD_AFTER_P95_MS: Final = 20.0
OTHER_LOAD_WARN_PCT: Final = 10.0
"""Warn when processes other than ours used more than this share of a core."""
SLOW_DETECT_MS: Final = 1000.0
"""A ``speech_started`` later than this after the caller began is flagged (normal: ~180 ms,
the sim's 150 ms VAD onset plus a frame and the path)."""
MAX_BENCH_LAG_P95_MS: Final = 5.0
MAX_LATE_FRAME_SHARE: Final = 0.01
MAX_MACHINE_BUSY_SHARE: Final = 0.7
TRUNCATE_ERROR_MAX_MS: Final = 40.0

# -- the caller's wire log -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WireEvent:
    t: float
    """Caller clock (s) at which the message was handled."""
    kind: Literal["media", "mark", "clear"]
    size: int = 0
    """Payload bytes (media)."""
    name: str = ""
    """Mark name (mark)."""


class WirePlayback(TwilioPlayback):
    """Twilio's playback model that also logs every bridge message it is fed, in order."""

    __slots__ = ("wire",)

    def __init__(self) -> None:
        super().__init__()
        self.wire: list[WireEvent] = []

    def push_media(self, payload: bytes, now: float) -> list[str]:
        self.wire.append(WireEvent(now, "media", size=len(payload)))
        return super().push_media(payload, now)

    def push_mark(self, name: str, now: float) -> list[str]:
        self.wire.append(WireEvent(now, "mark", name=name))
        return super().push_mark(name, now)

    def clear(self, now: float) -> ClearResult:
        self.wire.append(WireEvent(now, "clear"))
        return super().clear(now)

    def attributed_media(self) -> list[tuple[float, int, str | None]]:
        """``(arrival, bytes, item_id)`` of every media message; the item comes from the
        first mark that follows it (``None`` if no mark followed)."""
        out: list[tuple[float, int, str | None]] = []
        pending: list[WireEvent] = []
        for event in self.wire:
            if event.kind == "media":
                pending.append(event)
            elif event.kind == "mark":
                parsed = parse_mark_name(event.name)
                item = parsed.item_id if parsed is not None else None
                out += [(m.t, m.size, item) for m in pending]
                pending = []
        out += [(m.t, m.size, None) for m in pending]
        return out


# -- process helpers -----------------------------------------------------------------------


def cpu_seconds(pid: int | Literal["self"] = "self") -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # Fields after the command name start at field 3 (state): utime is 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bridge_command(port: int = 0) -> list[str]:
    """``bridge serve`` from this interpreter's environment (the venv's console script)."""
    script = Path(sys.executable).parent / "bridge"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "bridge.cli"]
    return [*head, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-format", "json"]


def bridge_env(upstream_url: str, fast_barge_in: FastMode) -> dict[str, str]:
    """This environment, minus keys and Twilio credentials, pointed at the sim upstream."""
    env = dict(os.environ)
    for name in (
        "OPENAI_API_KEY",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "BRIDGE_HOST",
        "BRIDGE_PORT",
        "BRIDGE_PUBLIC_URL",
    ):
        env.pop(name, None)
    env["OPENAI_REALTIME_URL"] = upstream_url
    env["BRIDGE_FAST_BARGE_IN"] = fast_barge_in
    env["BRIDGE_LOG_FORMAT"] = "json"
    env["BRIDGE_LOG_LEVEL"] = "INFO"
    return env


@dataclass(frozen=True, slots=True)
class BridgeProcess:
    process: trio.Process
    host: str
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def media_url(self) -> str:
        return f"ws://{self.host}:{self.port}/twilio/media"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _wait_ready(process: trio.Process, log_path: Path) -> tuple[str, int]:
    """Until the ``BRIDGE_READY`` line names the port and ``GET /readyz`` answers 200."""
    with trio.fail_after(READY_TIMEOUT_S):
        found: tuple[str, int] | None = None
        while found is None:
            if process.returncode is not None:
                raise RuntimeError(
                    f"bridge exited with {process.returncode} before it was ready:\n"
                    + _log_tail(log_path)
                )
            text = await trio.Path(log_path).read_text(errors="replace")
            ready = next(
                (
                    b
                    for r in parse_json_log(text)
                    if (b := read_record(BridgeReady, r.get("extra") or {}))
                ),
                None,
            )
            if ready is not None:
                found = (ready.host, ready.port)
            else:
                await trio.sleep(0.05)
        host, port = found
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                try:
                    response = await http.get(f"http://{host}:{port}/readyz")
                    if response.status_code == 200:
                        return host, port
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)


async def stop_process(process: trio.Process, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; always reaps. Shielded."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(timeout_s):
                await process.wait()
        if process.returncode is None:
            process.kill()
        await process.wait()


@asynccontextmanager
async def bridge_process(
    upstream_url: str, log_path: Path, fast_barge_in: FastMode
) -> AsyncIterator[BridgeProcess]:
    """Run ``bridge serve`` on a free port with JSON logs to ``log_path``; stop it on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = await trio.lowlevel.open_process(
            bridge_command(),
            env=bridge_env(upstream_url, fast_barge_in),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            host, port = await _wait_ready(process, log_path)
            yield BridgeProcess(process, host, port, log_path)
        finally:
            await stop_process(process)


def read_json_log(path: Path) -> list[dict[str, Any]]:
    """The ``record`` of every JSON line (loguru ``serialize=True``); other lines skipped."""
    return parse_json_log(path.read_text(errors="replace"))


def parse_json_log(text: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        record = obj.get("record") if isinstance(obj, dict) else None
        if isinstance(record, dict):
            records.append(record)
    return records


def tag_of(record: dict[str, Any]) -> str | None:
    extra = record.get("extra") or {}
    tag = extra.get("tag")
    return tag if isinstance(tag, str) else None


def call_of(record: dict[str, Any]) -> str | None:
    extra = record.get("extra") or {}
    sid = extra.get("call_sid")
    return sid if isinstance(sid, str) else None


async def wait_call_ends(log_path: Path, call_sids: set[str], timeout_s: float) -> int:
    """Until the bridge logged ``CALL_END`` for every call (or ``timeout_s``); how many did."""
    ended: set[str] = set()
    with trio.move_on_after(timeout_s):
        while True:
            text = await trio.Path(log_path).read_text(errors="replace")
            ended = {
                sid
                for r in parse_json_log(text)
                if tag_of(r) == "CALL_END" and (sid := call_of(r)) in call_sids
            }
            if ended >= call_sids:
                break
            await trio.sleep(0.1)
    return len(ended)


# -- plans and runs --------------------------------------------------------------------------


def sim_options() -> SimUpstreamOptions:
    return SimUpstreamOptions(
        host="127.0.0.1",
        port=0,
        reply_ms=REPLY_MS,
        generation_speed=GENERATION_SPEED,
        delta_ms=DELTA_MS,
        late_deltas_after_cancel=LATE_DELTAS_AFTER_CANCEL,
        first_delta_delay_ms=FIRST_DELTA_DELAY_MS,
        clock=time.monotonic,
    )


@dataclass(frozen=True, slots=True)
class CallPlan:
    call_sid: str
    offsets_ms: tuple[int, ...]
    """Cut-in offset into AI turn ``k`` for utterance ``k`` (1-based turns)."""
    start_after_s: float = 0.0

    def script(self, seed_base: int) -> CallerScript:
        return CallerScript(
            utterances=tuple(
                Utterance(
                    duration_ms=UTTERANCE_MS,
                    seed=seed_base + k,
                    trigger=AfterAiStarts(turn=k, delay_ms=d),
                )
                for k, d in enumerate(self.offsets_ms, start=1)
            ),
            hangup=AfterReply(delay_ms=HANGUP_AFTER_REPLY_MS),
        )

    @property
    def max_duration_s(self) -> float:
        return 20.0 + 6.0 * len(self.offsets_ms)


def spread_offsets(n: int, seed: int) -> list[int]:
    """``n`` cut-in offsets evenly spread over [200, 3000] ms, in a shuffled order."""
    if n <= 0:
        return []
    if n == 1:
        values = [(OFFSET_MIN_MS + OFFSET_MAX_MS) // 2]
    else:
        step = (OFFSET_MAX_MS - OFFSET_MIN_MS) / (n - 1)
        values = [round(OFFSET_MIN_MS + i * step) for i in range(n)]
    random.Random(seed).shuffle(values)
    return values


def single_plans(
    barge_ins: int, seed: int, per_call: int = BARGE_INS_PER_SINGLE_CALL
) -> list[CallPlan]:
    offsets = spread_offsets(barge_ins, seed)
    plans: list[CallPlan] = []
    for i in range(0, len(offsets), per_call):
        plans.append(
            CallPlan(f"CAbenchsingle{i // per_call:04d}", tuple(offsets[i : i + per_call]))
        )
    return plans


def concurrent_plans(calls: int, seed: int) -> list[CallPlan]:
    counts = [1 + i % 3 for i in range(calls)]
    offsets = spread_offsets(sum(counts), seed)
    plans: list[CallPlan] = []
    at = 0
    for i, count in enumerate(counts):
        plans.append(
            CallPlan(
                f"CAbenchconc{i:04d}",
                tuple(offsets[at : at + count]),
                start_after_s=CONCURRENT_START_SPREAD_S * i / max(1, calls),
            )
        )
        at += count
    return plans


@dataclass(slots=True)
class CallRun:
    plan: CallPlan
    caller: SimCaller
    playback: WirePlayback
    report: CallerReport | None = None
    error: str | None = None


def make_call(plan: CallPlan, media_url: str, index: int) -> CallRun:
    caller = SimCaller(
        CallerOptions(
            url=media_url,
            script=plan.script(seed_base=100 * index),
            call_sid=plan.call_sid,
            max_duration_s=plan.max_duration_s,
            clock=time.monotonic,
        )
    )
    playback = WirePlayback()
    caller.playback = playback
    return CallRun(plan, caller, playback)


async def _run_one(run: CallRun) -> None:
    await trio.sleep(run.plan.start_after_s)
    try:
        run.report = await run.caller.run()
    except CallerConnectError as exc:
        run.error = str(exc)


async def _run_with_deadline(runs: Sequence[CallRun], deadline_s: float) -> None:
    """Run ``runs`` concurrently; at ``deadline_s`` hang up the stragglers, 5 s later cancel.

    An overloaded machine makes callers fall behind real time (they catch up instead of
    dropping frames), so their own ``max_duration_s`` alone does not bound the run.
    """
    async with trio.open_nursery() as outer:
        calls_scope = trio.CancelScope()

        async def watchdog() -> None:
            await trio.sleep(deadline_s)
            for run in runs:
                if run.report is None:
                    run.caller.hangup()
            await trio.sleep(5.0)
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


async def run_calls(runs: Sequence[CallRun], *, sequential: bool) -> None:
    if sequential:
        for run in runs:
            await _run_with_deadline([run], run.plan.max_duration_s + 10.0)
        return
    deadline = max(r.plan.start_after_s + r.plan.max_duration_s for r in runs) + 5.0
    await _run_with_deadline(runs, deadline)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy so far (``/proc/stat``: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest and guest_nice (fields 9, 10) are already counted in user and nice.
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSample:
    wall_s: float
    cpu_s: dict[str, float]
    """Process label -> CPU seconds."""
    machine_busy_s: float


def cpu_snapshot(pids: dict[str, int | Literal["self"]]) -> CpuSample:
    return CpuSample(
        time.monotonic(),
        {label: cpu_seconds(pid) for label, pid in pids.items()},
        machine_busy_seconds(),
    )


def cpu_usage(before: CpuSample, after: CpuSample) -> dict[str, Any]:
    """CPU per process over the interval, and what other processes on the machine used
    (anything above a few % of a core there means the numbers were measured under
    someone else's load)."""
    wall = after.wall_s - before.wall_s

    def entry(used: float) -> dict[str, float | None]:
        pct = round(100.0 * used / wall, 1) if wall > 0 else None
        return {"cpu_s": round(used, 2), "pct_of_one_core": pct}

    usage: dict[str, Any] = {"wall_s": round(wall, 3)}
    ours = 0.0
    for label, start in before.cpu_s.items():
        used = after.cpu_s[label] - start
        ours += used
        usage[label] = entry(used)
    usage["other processes"] = entry(max(0.0, after.machine_busy_s - before.machine_busy_s - ours))
    usage["cores"] = os.cpu_count()
    return usage


@dataclass(slots=True)
class ScenarioData:
    name: str
    fast_barge_in: FastMode
    runs: list[CallRun]
    sessions: list[SimSession]
    records: list[dict[str, Any]]
    cpu: dict[str, Any]
    log_path: Path
    calls_ended_in_bridge: int
    bench_loop_lag_ms: list[float]
    wall_minus_monotonic_s: float
    """``time.time() - time.monotonic()``: maps the bridge's log timestamps (wall clock) onto
    the sim's and callers' clock (to ~1 ms; only used to split the path into legs)."""


async def run_scenario(
    name: str,
    plans: Sequence[CallPlan],
    *,
    sequential: bool,
    fast_barge_in: FastMode,
    out_dir: Path,
    log_name: str | None = None,
) -> ScenarioData:
    """Sim upstream here, bridge in a child process, the planned calls; raw observations."""
    sim = SimUpstream(sim_options())
    log_path = out_dir / (log_name or f"bench-bargein-{name}.log")
    wall_minus_mono = time.time() - time.monotonic()
    async with trio.open_nursery() as nursery:
        sim_url: str = await nursery.start(sim.serve)
        async with bridge_process(sim_url, log_path, fast_barge_in) as bridge:
            runs = [make_call(plan, bridge.media_url, i) for i, plan in enumerate(plans)]
            pids: dict[str, int | Literal["self"]] = {
                "bridge": bridge.pid,
                "bench (sim + callers)": "self",
            }
            lag: list[float] = []
            monitor = trio.CancelScope()
            nursery.start_soon(monitor_lag, lag, monitor)
            before = cpu_snapshot(pids)
            await run_calls(runs, sequential=sequential)
            monitor.cancel()
            ended = await wait_call_ends(log_path, {p.call_sid for p in plans}, CALL_END_TIMEOUT_S)
            after = cpu_snapshot(pids)
        nursery.cancel_scope.cancel()
    return ScenarioData(
        name=name,
        fast_barge_in=fast_barge_in,
        runs=runs,
        sessions=list(sim.sessions),
        records=read_json_log(log_path),
        cpu=cpu_usage(before, after),
        log_path=log_path,
        calls_ended_in_bridge=ended,
        bench_loop_lag_ms=lag,
        wall_minus_monotonic_s=wall_minus_mono,
    )


LAG_PERIOD_S: Final = 0.01


async def monitor_lag(samples: list[float], scope: trio.CancelScope) -> None:
    """How late this process's Trio loop wakes a 10 ms sleeper (ms): the load generator's
    own lag, which delays the callers' view of the wire (and so what they "hear")."""
    with scope:
        while True:
            start = time.monotonic()
            await trio.sleep(LAG_PERIOD_S)
            samples.append(max(0.0, (time.monotonic() - start - LAG_PERIOD_S) * 1000.0))


# -- analysis --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def stats(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": _round(percentile(values, 50)),
        "p95": _round(percentile(values, 95)),
        "max": _round(max(values)) if values else None,
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(slots=True)
class BargeInSample:
    call_sid: str
    k: int
    planned_offset_ms: int
    offset_ms: float | None = None
    """Caller starts speaking − AI turn ``k`` starts playing at the caller (ms)."""
    speech_started_offset_ms: float | None = None
    """``speech_started`` written by the sim − AI turn ``k`` start (ms)."""
    trigger: str | None = None
    reaction_ms: float | None = None
    upstream_ms: float | None = None
    detect_ms: float | None = None
    """Caller starts speaking → the sim writes ``speech_started`` (server VAD onset time plus
    the caller → bridge → sim audio path)."""
    heard_after_ms: float | None = None
    upstream_leg_ms: float | None = None
    """Sim writes ``speech_started`` → the bridge's reader has it (wall/monotonic mapped)."""
    twilio_leg_ms: float | None = None
    """Bridge has written the ``clear`` → the caller handles it (wall/monotonic mapped)."""
    clear_delay_ms: float | None = None
    """``speech_started`` written by the sim → ``clear`` handled by the caller (ms; negative
    when a local fast barge-in cleared first): the whole path, transport and both loops."""
    late_audio_bytes: int = 0
    truncations: list[tuple[str, int, float]] = field(default_factory=list)
    """(item_id, audio_end_ms sent, heard ms at the caller)."""
    deleted_heard_ms: list[float] = field(default_factory=list)
    next_reply_ok: bool | None = None
    next_reply_detail: str = ""
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "call_sid": self.call_sid,
            "k": self.k,
            "planned_offset_ms": self.planned_offset_ms,
            "offset_ms": _round(self.offset_ms, 1),
            "speech_started_offset_ms": _round(self.speech_started_offset_ms, 1),
            "trigger": self.trigger,
            "reaction_ms": _round(self.reaction_ms),
            "upstream_ms": _round(self.upstream_ms),
            "detect_ms": _round(self.detect_ms, 1),
            "heard_after_ms": _round(self.heard_after_ms, 2),
            "clear_delay_ms": _round(self.clear_delay_ms, 2),
            "upstream_leg_ms": _round(self.upstream_leg_ms, 2),
            "twilio_leg_ms": _round(self.twilio_leg_ms, 2),
            "late_audio_bytes": self.late_audio_bytes,
            "truncations": [[i, e, round(h, 2)] for i, e, h in self.truncations],
            "deleted_heard_ms": [round(h, 2) for h in self.deleted_heard_ms],
            "next_reply_ok": self.next_reply_ok,
            "next_reply_detail": self.next_reply_detail,
            "problems": self.problems,
        }


def _session_for(run: CallRun, item_sessions: dict[str, SimSession]) -> SimSession | None:
    votes: dict[int, int] = {}
    chosen: dict[int, SimSession] = {}
    for event in run.playback.wire:
        if event.kind != "mark":
            continue
        parsed = parse_mark_name(event.name)
        if parsed is None:
            continue
        session = item_sessions.get(parsed.item_id)
        if session is not None:
            votes[session.index] = votes.get(session.index, 0) + 1
            chosen[session.index] = session
    if not votes:
        return None
    return chosen[max(votes, key=lambda i: votes[i])]


def _origin(run: CallRun, report: CallerReport) -> float | None:
    """Caller clock (s) of the report's time zero, from the first AI turn."""
    turns = run.playback.turns
    if not turns or not report.ai_turns:
        return None
    return turns[0].start - report.ai_turns[0].start_ms / 1000.0


def analyse_call(
    run: CallRun,
    session: SimSession | None,
    records: list[dict[str, Any]],
    wall_minus_mono: float = 0.0,
) -> tuple[list[BargeInSample], dict[str, Any]]:
    """Barge-in samples of one call and its per-call facts."""
    plan = run.plan
    samples = [BargeInSample(plan.call_sid, k, d) for k, d in enumerate(plan.offsets_ms, start=1)]
    facts: dict[str, Any] = {"call_sid": plan.call_sid, "error": run.error}
    report = run.report
    if report is None or session is None:
        for sample in samples:
            sample.problems.append("call failed" if report is None else "no sim session matched")
            sample.next_reply_ok = False
        return samples, facts
    playback = run.playback
    facts.update(
        underrun_gaps=report.underrun_gaps,
        underrun_ms=round(report.underrun_ms, 2),
        late_frames=report.late_frames,
        media_sent=report.media_sent,
        violations=report.violation_count,
        clears=report.clears,
        ai_turns=len(report.ai_turns),
    )
    origin = _origin(run, report)
    speech_starts = (
        [origin + e.t_ms / 1000.0 for e in report.timeline if e.kind is EventKind.SPEECH_START]
        if origin is not None
        else []
    )
    responses = sorted(session.responses.values(), key=lambda r: r.created_at)
    ss_times = [t for t, _ in session.speech_started]
    clears = [c.at for c in playback.clears]
    media = playback.attributed_media()
    barge_ins = [(r, b) for r in records if (b := read_record(BargeInReport, r.get("extra") or {}))]
    hard = [(r, b) for r, b in barge_ins if b.trigger in ("server", "confirmed")]
    local = [(r, b) for r, b in barge_ins if b.trigger == "local"]
    facts["barge_in_records"] = len(hard)
    facts["local_barge_in_records"] = len(local)
    facts["false_alarms_resumed"] = sum(1 for r in records if tag_of(r) == "BARGE_IN_RESUMED")
    facts["speech_started"] = len(ss_times)
    turns = playback.turns
    deleted = {item.id for item in session.conversation if item.deleted}
    truncated_by_item: dict[str, int] = {}
    for tr in session.truncations:
        truncated_by_item.setdefault(tr.item_id, tr.audio_end_ms)
    underruns = report.underruns_by_item

    def items_of(rs: Iterable[Any]) -> set[str]:
        return {i for r in rs for i in r.items}

    t_ss_list: list[float | None] = []
    # When the caller's audio was stopped for barge-in k: the earlier of speech_started and
    # the clear (a local fast barge-in clears before the server's speech_started).
    stop_list: list[float | None] = []
    for k, sample in enumerate(samples, start=1):
        if len(speech_starts) < k:
            sample.problems.append("utterance never spoken")
            t_ss_list.append(None)
            stop_list.append(None)
            continue
        s_k = speech_starts[k - 1]
        s_next = speech_starts[k] if len(speech_starts) > k else math.inf
        in_window = [t for t in ss_times if s_k <= t < s_next]
        if len(in_window) > 1:
            sample.problems.append(f"{len(in_window)} speech_started for one utterance")
        t_ss = in_window[0] if in_window else None
        t_ss_list.append(t_ss)
        clear_at = next((c for c in clears if s_k <= c < s_next), None)
        stops = [t for t in (t_ss, clear_at) if t is not None]
        stop_list.append(min(stops) if stops else None)
        if len(turns) >= k:
            sample.offset_ms = (s_k - turns[k - 1].start) * 1000.0
            if t_ss is not None:
                sample.speech_started_offset_ms = (t_ss - turns[k - 1].start) * 1000.0
        if t_ss is None:
            sample.problems.append("no speech_started")
            continue
        sample.detect_ms = (t_ss - s_k) * 1000.0
        if sample.detect_ms > SLOW_DETECT_MS:
            sample.problems.append(
                f"speech_started {sample.detect_ms:.0f} ms after the caller began "
                "(caller audio reached the sim late)"
            )
        # The responses being interrupted: every one created before the caller spoke (the
        # turn playing then, and earlier ones). Anchored on the caller's speech, not on
        # speech_started, so a late speech_started cannot pull in later replies.
        before = [r for r in responses if r.created_at < s_k]
        interrupted_items = items_of(before)
        if clear_at is None:
            sample.problems.append("no clear at the caller")
        end = math.inf if clear_at is None else clear_at
        sample.heard_after_ms = (
            0.0 if end <= t_ss else playback.played_between(t_ss, end, interrupted_items)
        )
        if clear_at is not None:
            sample.clear_delay_ms = (clear_at - t_ss) * 1000.0
            sample.late_audio_bytes = sum(
                n for t, n, item in media if t > clear_at and item in interrupted_items
            )
        # The bridge's record of this barge-in: the hard one that cancelled the response.
        last = before[-1] if before else None
        found = next(
            (
                (r, b)
                for r, b in hard
                if last is not None
                and (
                    last.id in b.cancelled
                    or any(t.item_id in last.items for t in b.truncations)
                    or any(i in last.items for i in b.deleted)
                )
            ),
            None,
        )
        if found is None:
            sample.problems.append("no BARGE_IN record for the interrupted response")
        else:
            record, barge_in = found
            sample.trigger = barge_in.trigger
            sample.upstream_ms = barge_in.upstream_ms
            clear_ms = barge_in.clear_ms
            if clear_ms is None and sample.trigger == "confirmed":
                prior = [
                    b
                    for r, b in local
                    if r["time"]["timestamp"] <= record["time"]["timestamp"]
                    and b.clear_ms is not None
                ]
                if prior:
                    clear_ms = prior[-1].clear_ms
                    sample.trigger = "local+confirmed"
            sample.reaction_ms = clear_ms
            logged_at = record.get("time", {}).get("timestamp")
            upstream_ms = barge_in.upstream_ms
            if sample.trigger == "server" and logged_at is not None and upstream_ms is not None:
                # The record is written right after the upstream sends (upstream_ms after
                # detection); detection is when the bridge's reader got speech_started.
                detected = float(logged_at) - wall_minus_mono - float(upstream_ms) / 1000.0
                sample.upstream_leg_ms = (detected - t_ss) * 1000.0
                if clear_at is not None and clear_ms is not None:
                    written = detected + float(clear_ms) / 1000.0
                    sample.twilio_leg_ms = (clear_at - written) * 1000.0
        if last is not None:
            for item_id in last.items:
                heard = playback.heard_ms(item_id)
                if item_id in truncated_by_item:
                    sample.truncations.append((item_id, truncated_by_item[item_id], heard))
                elif item_id in deleted:
                    sample.deleted_heard_ms.append(heard)

    # The reply after each barge-in.
    for k, sample in enumerate(samples, start=1):
        t_ss = t_ss_list[k - 1]
        if t_ss is None:
            sample.next_reply_ok = False
            sample.next_reply_detail = "no speech_started"
            continue
        reply = next((r for r in responses if r.created_at > t_ss), None)
        if reply is None:
            sample.next_reply_ok = False
            sample.next_reply_detail = "no response after the barge-in"
            continue
        items = set(reply.items)
        generated = float(sum(reply.audio_ms.values()))
        heard = sum(playback.heard_ms(i) for i in items)
        gaps = sum(underruns.get(i, (0, 0.0))[0] for i in items)
        starts = [s.start for s in playback.segments() if s.item_id in items]
        if not starts or generated <= 0:
            sample.next_reply_ok = False
            sample.next_reply_detail = f"reply {reply.id} ({reply.status}) never played"
            continue
        reply_start = min(starts)
        next_cut = stop_list[k] if k < len(samples) else None
        if k == len(samples) or next_cut is None:
            ok = heard >= generated - REPLY_TOLERANCE_MS and gaps == 0
            sample.next_reply_detail = f"heard {heard:.1f}/{generated:.0f} ms, gaps {gaps}"
        else:
            expected = min(generated, (next_cut - reply_start) * 1000.0)
            got = playback.played_between(reply_start, next_cut, items)
            ok = got >= expected - REPLY_TOLERANCE_MS and gaps == 0
            sample.next_reply_detail = (
                f"heard {got:.1f}/{expected:.1f} ms up to the next cut-in, gaps {gaps}"
            )
        sample.next_reply_ok = ok
    return samples, facts


def analyse(data: ScenarioData) -> dict[str, Any]:
    """Samples and summary of one scenario."""
    item_sessions: dict[str, SimSession] = {}
    for session in data.sessions:
        for response in session.responses.values():
            for item_id in response.items:
                item_sessions[item_id] = session
    by_call: dict[str, list[dict[str, Any]]] = {}
    for record in data.records:
        sid = call_of(record)
        if sid is not None:
            by_call.setdefault(sid, []).append(record)
    samples: list[BargeInSample] = []
    calls: list[dict[str, Any]] = []
    for run in data.runs:
        matched = _session_for(run, item_sessions)
        call_samples, facts = analyse_call(
            run, matched, by_call.get(run.plan.call_sid, []), data.wall_minus_monotonic_s
        )
        samples += call_samples
        calls.append(facts)
    name = data.name
    reaction = [s.reaction_ms for s in samples if s.reaction_ms is not None]
    heard_after = [s.heard_after_ms for s in samples if s.heard_after_ms is not None]
    # Late audio is only measurable for a barge-in whose clear reached the caller.
    late = [s.late_audio_bytes for s in samples if s.clear_delay_ms is not None]
    trunc_err = [e - h for s in samples for _, e, h in s.truncations]
    deleted_heard = [h for s in samples for h in s.deleted_heard_ms]
    replies = [s.next_reply_ok for s in samples]
    gaps = sum(int(c.get("underrun_gaps", 0)) for c in calls)
    gap_ms = sum(float(c.get("underrun_ms", 0.0)) for c in calls)
    reaction_target = TARGETS.get(name, TARGETS["concurrent"])["reaction_p95_ms"]
    reaction_stats = stats(reaction)
    heard_stats = stats(heard_after)
    trunc_stats = stats([abs(e) for e in trunc_err])
    metrics: dict[str, Any] = {
        "reaction_ms": {
            **reaction_stats,
            "target": f"p95 < {reaction_target:g} ms",
            "pass": bool(reaction)
            and (reaction_stats["p95"] or 0.0) < reaction_target
            and len(reaction) == len(samples),
            "by_trigger": _count(s.trigger or "none" for s in samples),
        },
        "heard_after_ms": {
            **heard_stats,
            "target": f"p95 <= {HEARD_AFTER_P95_MS:g} ms",
            "pass": bool(heard_after)
            and (heard_stats["p95"] or 0.0) <= HEARD_AFTER_P95_MS
            and len(heard_after) == len(samples),
        },
        "late_audio_bytes": {
            **stats([float(v) for v in late]),
            "total": sum(late),
            "barge_ins_with_late_audio": sum(1 for v in late if v),
            "barge_ins_without_clear": len(samples) - len(late),
            "target": "exactly 0",
            "pass": sum(late) == 0 and len(late) == len(samples),
        },
        "truncate_error_ms": {
            **trunc_stats,
            "signed_p50": _round(percentile(trunc_err, 50)),
            "signed_min": _round(min(trunc_err)) if trunc_err else None,
            "signed_max": _round(max(trunc_err)) if trunc_err else None,
            "deleted_items": len(deleted_heard),
            "deleted_items_heard_max_ms": _round(max(deleted_heard)) if deleted_heard else None,
            "target": f"|error| <= {TRUNCATE_ERROR_MAX_MS:g} ms",
            "pass": (trunc_stats["max"] or 0.0) <= TRUNCATE_ERROR_MAX_MS
            and all(h <= TRUNCATE_ERROR_MAX_MS for h in deleted_heard),
        },
        "next_reply": {
            "n": len(replies),
            "ok": sum(1 for r in replies if r),
            "target": "heard in full every time",
            "pass": bool(replies) and all(replies),
        },
        "pacing_gaps": {
            "count": gaps,
            "ms": round(gap_ms, 2),
            "target": "0",
            "pass": gaps == 0,
        },
    }
    offsets = [s.offset_ms for s in samples if s.offset_ms is not None]
    clear_delay = [s.clear_delay_ms for s in samples if s.clear_delay_ms is not None]
    lag = data.bench_loop_lag_ms
    diagnostics = {
        "clear_delay_ms": stats(clear_delay),
        "detect_ms": stats([s.detect_ms for s in samples if s.detect_ms is not None]),
        "upstream_leg_ms": stats(
            [s.upstream_leg_ms for s in samples if s.upstream_leg_ms is not None]
        ),
        "twilio_leg_ms": stats([s.twilio_leg_ms for s in samples if s.twilio_leg_ms is not None]),
        "bench_loop_lag_ms": {
            **stats(lag),
            "share_over_5ms": round(sum(1 for v in lag if v > 5.0) / len(lag), 4) if lag else None,
        },
    }
    call_s = sum(r.report.duration_ms for r in data.runs if r.report is not None) / 1000.0
    wall_s = float(data.cpu["wall_s"])
    load: dict[str, Any] = {
        "call_seconds": round(call_s, 1),
        "mean_concurrent_calls": round(call_s / wall_s, 1) if wall_s > 0 else None,
    }
    for label, usage in data.cpu.items():
        if isinstance(usage, dict) and call_s > 0 and label != "other processes":
            per_call_s = 1000.0 * float(usage["cpu_s"]) / call_s
            load[label] = {"cpu_ms_per_call_second": round(per_call_s, 2)}
    validity = measurement_validity(data.cpu, diagnostics, calls)
    problems = [f"{s.call_sid} #{s.k}: {p}" for s in samples for p in s.problems] + [
        f"{s.call_sid} #{s.k}: next reply: {s.next_reply_detail}"
        for s in samples
        if s.next_reply_ok is False
    ]
    return {
        "calls": len(data.runs),
        "calls_failed": sum(1 for r in data.runs if r.report is None),
        "calls_ended_in_bridge": data.calls_ended_in_bridge,
        "barge_ins_planned": sum(len(r.plan.offsets_ms) for r in data.runs),
        "barge_ins_measured": len(reaction),
        "fast_barge_in": data.fast_barge_in,
        "cut_in_offset_ms": {
            "min": _round(min(offsets), 1) if offsets else None,
            "p50": _round(percentile(offsets, 50), 1),
            "max": _round(max(offsets), 1) if offsets else None,
        },
        "metrics": metrics,
        "pass": all(bool(m["pass"]) for m in metrics.values()),
        "cpu": data.cpu,
        "load": load,
        "diagnostics": diagnostics,
        "measurement": validity,
        "caller_late_frames": sum(int(c.get("late_frames", 0)) for c in calls),
        "protocol_violations": sum(int(c.get("violations", 0)) for c in calls),
        "false_alarms_resumed": sum(int(c.get("false_alarms_resumed", 0)) for c in calls),
        "extra_speech_started": sum(
            max(0, int(c.get("speech_started", 0)) - len(r.plan.offsets_ms))
            for c, r in zip(calls, data.runs, strict=True)
        ),
        "bridge_log": str(data.log_path),
        "problems": problems[:50],
        "problem_count": len(problems),
        "calls_detail": calls,
        "samples": [s.as_json() for s in samples],
    }


def measurement_validity(
    cpu: dict[str, Any], diagnostics: dict[str, Any], calls: list[dict[str, Any]]
) -> dict[str, Any]:
    """Whether the load generator and the machine kept up, so a miss is the bridge's.

    The simulated callers send real-time media and model playback on their own loop: when
    this process lags, they hear (and report) the bridge's audio late, and their frames reach
    the bridge late. Another process using the cores does the same to both sides.
    """
    reasons: list[str] = []
    lag_p95 = diagnostics["bench_loop_lag_ms"]["p95"]
    if lag_p95 is not None and lag_p95 > MAX_BENCH_LAG_P95_MS:
        reasons.append(f"bench loop lag p95 {lag_p95:.1f} ms > {MAX_BENCH_LAG_P95_MS:g} ms")
    sent = sum(int(c.get("media_sent", 0)) for c in calls)
    late = sum(int(c.get("late_frames", 0)) for c in calls)
    if sent and late / sent > MAX_LATE_FRAME_SHARE:
        reasons.append(
            f"callers sent {100 * late / sent:.1f}% of frames > 5 ms late "
            f"(> {100 * MAX_LATE_FRAME_SHARE:g}%)"
        )
    other = cpu["other processes"]["pct_of_one_core"]
    if other is not None and other > OTHER_LOAD_WARN_PCT:
        reasons.append(f"other processes used {other:.0f}% of a core")
    wall = float(cpu["wall_s"])
    busy = sum(float(v["cpu_s"]) for k, v in cpu.items() if isinstance(v, dict))
    cores = int(cpu.get("cores") or 1)
    if wall > 0 and busy / (wall * cores) > MAX_MACHINE_BUSY_SHARE:
        reasons.append(
            f"machine {100 * busy / (wall * cores):.0f}% busy on average over {cores} cores"
        )
    return {"valid": not reasons, "reasons": reasons}


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


# -- output ----------------------------------------------------------------------------------


def _fmt(value: object, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value}{unit}"


def table_rows(name: str, result: dict[str, Any]) -> list[list[str]]:
    rows = _metric_rows(name, result)
    clean = "yes" if result["measurement"]["valid"] else "no (see below)"
    return [[*row, clean] for row in rows]


def _metric_rows(name: str, result: dict[str, Any]) -> list[list[str]]:
    m = result["metrics"]
    verdict = {True: "PASS", False: "FAIL"}
    rows: list[list[str]] = []
    for key, label in (
        ("reaction_ms", "reaction (ms)"),
        ("heard_after_ms", "heard after (ms)"),
        ("truncate_error_ms", "|truncate error| (ms)"),
    ):
        s = m[key]
        rows.append(
            [
                name,
                label,
                str(s["n"]),
                _fmt(s["p50"]),
                _fmt(s["p95"]),
                _fmt(s["max"]),
                s["target"],
                verdict[bool(s["pass"])],
            ]
        )
    late = m["late_audio_bytes"]
    n = m["next_reply"]["n"]
    rows.append(
        [
            name,
            "late audio forwarded (B)",
            str(late["n"]),
            "-",
            "-",
            _fmt(late["max"]),
            f"total {late['total']}; {late['target']}"
            + (f" ({late['barge_ins_without_clear']} had no clear)" if late["n"] < n else ""),
            verdict[bool(late["pass"])],
        ]
    )
    reply = m["next_reply"]
    rows.append(
        [
            name,
            "next reply heard",
            str(reply["n"]),
            "-",
            "-",
            "-",
            f"{reply['ok']}/{reply['n']} ok; every time",
            verdict[bool(reply["pass"])],
        ]
    )
    gaps = m["pacing_gaps"]
    rows.append(
        [
            name,
            "pacing gaps",
            "-",
            "-",
            "-",
            "-",
            f"{gaps['count']} gaps / {gaps['ms']:.0f} ms; target 0",
            verdict[bool(gaps["pass"])],
        ]
    )
    return rows


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


TABLE_HEADER: Final = (
    "scenario",
    "metric",
    "n",
    "p50",
    "p95",
    "max",
    "target",
    "result",
    "clean run",
)


def bridge_settings(fast_barge_in: FastMode) -> dict[str, Any]:
    """The bridge's effective settings as its child environment makes them."""
    try:
        config = load_config(bridge_env("ws://127.0.0.1:1/", fast_barge_in))
    except ConfigError as exc:
        return {"error": str(exc)}
    return {
        "tx_frame_ms": config.tx_frame_ms,
        "tx_lead_ms": config.tx_lead_ms,
        "fast_barge_in": config.fast_barge_in,
        "confirm_window_ms": config.confirm_window_ms,
        "audio_gate": config.audio_gate,
    }


def run_config(fast_barge_in: FastMode) -> dict[str, Any]:
    return {
        "bridge": bridge_settings(fast_barge_in),
        "sim": {
            "reply_ms": REPLY_MS,
            "generation_speed": GENERATION_SPEED,
            "delta_ms": DELTA_MS,
            "late_deltas_after_cancel": LATE_DELTAS_AFTER_CANCEL,
            "first_delta_delay_ms": FIRST_DELTA_DELAY_MS,
        },
        "caller": {
            "utterance_ms": UTTERANCE_MS,
            "cut_in_offsets_ms": [OFFSET_MIN_MS, OFFSET_MAX_MS],
            "hangup_after_reply_ms": HANGUP_AFTER_REPLY_MS,
        },
        "layout": "bridge: child process (bridge serve); sim upstream + callers: this process",
        "clock": "time.monotonic (sim and callers)",
        "git_head": _git_head(),
        "bridge_uncommitted_changes": _dirty("bridge"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }


def _git_head() -> str | None:
    try:
        out = subprocess.run(
            ["git", "log", "--oneline", "-1"], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def _dirty(path: str) -> list[str] | None:
    """Files under ``path`` that differ from HEAD: the run measured the working tree."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", path],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return [line[3:] for line in out.stdout.splitlines() if line.strip()]


def configure_bench_logging() -> None:
    """Only warnings from the sim and callers (they log a line per call and session)."""
    logger.remove()
    logger.add(sys.stderr, level="WARNING")


async def _main_async(args: argparse.Namespace) -> dict[str, Any]:
    fast: FastMode = args.fast_barge_in
    out_dir: Path = args.out.parent
    results: dict[str, Any] = {}
    if args.scenario in ("single", "all"):
        plans = single_plans(args.barge_ins_single, args.seed)
        print(
            f"single: {len(plans)} calls, {args.barge_ins_single} barge-ins, one call at a time",
            flush=True,
        )
        data = await run_scenario(
            "single", plans, sequential=True, fast_barge_in=fast, out_dir=out_dir
        )
        results["single"] = analyse(data)
    if args.scenario in ("concurrent", "all"):
        plans = concurrent_plans(args.calls_concurrent, args.seed + 1)
        print(
            f"concurrent: {len(plans)} calls started within {CONCURRENT_START_SPREAD_S:g} s, "
            f"{sum(len(p.offsets_ms) for p in plans)} barge-ins",
            flush=True,
        )
        data = await run_scenario(
            "concurrent", plans, sequential=False, fast_barge_in=fast, out_dir=out_dir
        )
        results["concurrent"] = analyse(data)
    for i, calls in enumerate(args.concurrency_sweep):
        name = f"concurrent-{calls}"
        if name in results:
            name = f"{name}-run{i + 1}"
        plans = concurrent_plans(calls, args.seed + 1)
        print(
            f"{name}: {calls} calls, {sum(len(p.offsets_ms) for p in plans)} barge-ins", flush=True
        )
        data = await run_scenario(
            name, plans, sequential=False, fast_barge_in=fast, out_dir=out_dir
        )
        results[name] = analyse(data)
    return results


def print_summary(results: dict[str, Any]) -> None:
    rows = [row for name, result in results.items() for row in table_rows(name, result)]
    print()
    print(format_table(rows, TABLE_HEADER))
    print()
    for name, result in results.items():
        cpu = result["cpu"]
        offsets = result["cut_in_offset_ms"]
        parts = [
            f"{label} {v['cpu_s']:.1f} s ({v['pct_of_one_core']}% of a core)"
            for label, v in cpu.items()
            if isinstance(v, dict)
        ]
        print(
            f"{name}: {result['calls']} calls ({result['calls_failed']} failed), "
            f"{result['barge_ins_measured']}/{result['barge_ins_planned']} barge-ins measured, "
            f"cut-ins {offsets['min']}..{offsets['max']} ms into the reply; "
            f"wall {cpu['wall_s']:.1f} s; CPU: {', '.join(parts)}; "
            f"caller late frames {result['caller_late_frames']}"
        )
        load = result["load"]
        per_call = [
            f"{label} {v['cpu_ms_per_call_second']} ms"
            for label, v in load.items()
            if isinstance(v, dict)
        ]
        diag = result["diagnostics"]
        cd, bl, dt = diag["clear_delay_ms"], diag["bench_loop_lag_ms"], diag["detect_ms"]
        print(
            f"  caller speaks -> speech_started written: p50 {_fmt(dt['p50'])} p95 "
            f"{_fmt(dt['p95'])} max {_fmt(dt['max'])} ms; "
            f"speech_started written -> clear at the caller: p50 {_fmt(cd['p50'])} "
            f"p95 {_fmt(cd['p95'])} max {_fmt(cd['max'])} ms; bench loop lag p95 "
            f"{_fmt(bl['p95'])} max {_fmt(bl['max'])} ms"
        )
        up, tw = diag["upstream_leg_ms"], diag["twilio_leg_ms"]
        print(
            f"  of which sim -> bridge reader: p50 {_fmt(up['p50'])} p95 {_fmt(up['p95'])} ms; "
            f"clear written -> caller: p50 {_fmt(tw['p50'])} p95 {_fmt(tw['p95'])} ms"
        )
        if per_call:
            print(
                f"  load: {load['call_seconds']} call-seconds, mean {load['mean_concurrent_calls']}"
                f" calls at once; CPU per call-second: {', '.join(per_call)}"
            )
        validity = result["measurement"]
        if not validity["valid"]:
            print(
                "  MEASUREMENT NOT CLEAN (misses may not be the bridge's): "
                + "; ".join(validity["reasons"])
            )
        if result["problem_count"]:
            print(f"  {result['problem_count']} problem(s), first ones:")
            for problem in result["problems"][:10]:
                print(f"    {problem}")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas: {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("numbers of calls must be >= 1")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bargein", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=Path("out/bench-bargein.json"))
    parser.add_argument(
        "--scenario",
        choices=("single", "concurrent", "all", "none"),
        default="all",
        help="none: only the --concurrency-sweep scenarios",
    )
    parser.add_argument("--calls-concurrent", type=int, default=100)
    parser.add_argument("--barge-ins-single", type=int, default=50)
    parser.add_argument("--fast-barge-in", choices=("off", "duck"), default="off")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--concurrency-sweep",
        type=_int_list,
        default=[],
        metavar="N,N,...",
        help="also run the concurrent scenario with these numbers of calls (capacity knee)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_bench_logging()
    started = time.monotonic()
    results = trio.run(_main_async, args)
    print_summary(results)
    report = {
        "bench": "bargein",
        "command": "python -m bench.bargein " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": run_config(args.fast_barge_in),
        "targets": {
            "reaction_p95_ms": {k: v["reaction_p95_ms"] for k, v in TARGETS.items()},
            "heard_after_p95_ms": HEARD_AFTER_P95_MS,
            "late_audio_bytes": 0,
            "truncate_error_max_abs_ms": TRUNCATE_ERROR_MAX_MS,
            "next_reply": "heard in full every time",
            "pacing_gaps": 0,
        },
        "scenarios": results,
        "pass": all(bool(r["pass"]) for r in results.values()),
        "duration_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nJSON: {args.out} ({report['duration_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
