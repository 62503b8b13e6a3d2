"""Run chaos schedules and report: ``python -m bench.chaos --schedules 10000``.

Schedules ``seed .. seed+schedules-1`` are split over ``--workers`` processes; each runs
its schedules one after another, each in its own Trio run under a virtual clock. The JSON
report (``--out``) holds the command, the wall and CPU time, what the schedules covered
(faults, losses, restores, end reasons) and every violation with its seed; the table says
the same in short. ``--verbose`` prints, for each schedule, its faults and what the bridge
logged (use it with one seed to look at a violation). The exit status is 1 if any
invariant was violated.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shlex
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from loguru import logger
from trio.testing import MockClock

from bench.chaos.invariants import CHECKS, check_all
from bench.chaos.rig import Observation, run_schedule
from bench.chaos.schedule import schedule_for
from bench.common.cli import bench_parser
from bench.common.tables import format_table

DEFAULT_OUT = Path("out/bench-chaos.json")


@dataclass(slots=True)
class Tally:
    """What a worker saw over its schedules (summed over workers)."""

    schedules: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    ends: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.schedules += other.schedules
        self.violations += other.violations
        self.faults.update(other.faults)
        self.ends.update(other.ends)
        self.events.update(other.events)


COUNTED_TAGS = ("UPSTREAM_LOST", "UPSTREAM_RESTORED", "HOLD_PHRASE", "BARGE_IN", "SESSION_READY")


def _observe(seen: Observation, tally: Tally, *, verbose: bool) -> None:
    schedule = seen.schedule
    tally.schedules += 1
    tally.faults.update(f.kind for f in schedule.upstream_faults)
    tally.faults.update(
        kind
        for kind, present in (
            ("twilio_loss", bool(schedule.lost_inbound_ms)),
            ("twilio_jitter", schedule.jitter_ms > 0),
            ("twilio_abort", schedule.abort_at_s is not None),
            ("notes", bool(schedule.notes_at_s)),
            ("slow_deltas", schedule.generation_speed < 1.0),
            ("slow_handshake", schedule.handshake_delay_ms > 0),
        )
        if present
    )
    tally.ends[seen.end_reason or "never"] += 1
    for tag in COUNTED_TAGS:
        tally.events[tag] += len(seen.lines_tagged(tag))
    violations = check_all(seen)
    if violations:
        tally.violations.append(
            {
                "seed": schedule.seed,
                "schedule": schedule.describe(),
                "applied": seen.applied,
                "violations": violations,
            }
        )
    if verbose:
        _print_schedule(seen, violations)


def _print_schedule(seen: Observation, violations: list[str]) -> None:
    t0 = seen.stream_start or 0.0
    print(f"seed {seen.schedule.seed}: {seen.schedule.describe()}")
    for applied in seen.applied:
        print(f"  fault   {applied}")
    for line in seen.lines:
        if line.tag is not None:
            print(f"  {line.t - t0:8.3f} {line.level:<7} {line.message[:160]}")
    for violation in violations:
        print(f"  VIOLATION {violation}")


def run_worker(seeds: Sequence[int], verbose: bool) -> Tally:
    """Run ``seeds`` in this process (a worker's entry point)."""
    logger.remove()  # the bridge's lines are collected by the rig, not printed
    tally = Tally()
    for seed in seeds:
        seen = trio.run(run_schedule, schedule_for(seed), clock=MockClock(autojump_threshold=0))
        _observe(seen, tally, verbose=verbose)
    return tally


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser("chaos", __doc__, DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--schedules", type=int, default=10_000, help="how many (10000)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: cores)"
    )
    parser.add_argument("--verbose", action="store_true", help="print every schedule's log")
    args = parser.parse_args(argv)
    if args.schedules < 1 or args.workers < 1:
        parser.error("--schedules and --workers must be >= 1")
    seeds = list(range(args.seed, args.seed + args.schedules))
    workers = min(args.workers, len(seeds))
    chunks = [seeds[k::workers] for k in range(workers)]
    wall0, cpu0 = time.perf_counter(), _children_cpu_s()
    if workers == 1:
        cpu_self0 = time.process_time()
        tally = run_worker(chunks[0], args.verbose)
        cpu_s = time.process_time() - cpu_self0
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.starmap(run_worker, [(chunk, args.verbose) for chunk in chunks])
        tally = Tally()
        for part in parts:
            tally.add(part)
        cpu_s = _children_cpu_s() - cpu0
    wall_s = time.perf_counter() - wall0
    report = _report(args, tally, wall_s, cpu_s, workers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _print_report(report)
    return 1 if tally.violations else 0


def _children_cpu_s() -> float:
    times = os.times()
    return times.children_user + times.children_system


def _report(args: Any, tally: Tally, wall_s: float, cpu_s: float, workers: int) -> dict[str, Any]:
    by_invariant = Counter(v.split(":", 1)[0] for f in tally.violations for v in f["violations"])
    return {
        "bench": "chaos",
        "command": " ".join(
            shlex.quote(a) for a in [sys.executable, "-m", "bench.chaos", *sys.argv[1:]]
        ),
        "seeds": [args.seed, args.seed + args.schedules - 1],
        "schedules": tally.schedules,
        "workers": workers,
        "wall_s": round(wall_s, 1),
        "cpu_s": round(cpu_s, 1),
        "invariants": {name: by_invariant.get(name, 0) for name, _ in CHECKS},
        "schedules_with_violations": len(tally.violations),
        "faults": dict(tally.faults.most_common()),
        "events": dict(tally.events),
        "end_reasons": dict(tally.ends.most_common()),
        "violations": tally.violations,
    }


def _print_report(report: dict[str, Any]) -> None:
    print(
        f"chaos: {report['schedules']} schedules (seeds {report['seeds'][0]}.."
        f"{report['seeds'][1]}), {report['workers']} worker(s), {report['wall_s']} s wall, "
        f"{report['cpu_s']} s CPU"
    )
    rows = [
        [name, str(count), "pass" if count == 0 else "FAIL"]
        for name, count in report["invariants"].items()
    ]
    print(format_table(("invariant", "violations", "result"), rows))
    print(
        format_table(("covered", "schedules"), [[k, str(v)] for k, v in report["faults"].items()])
    )
    print(format_table(("logged", "lines"), [[k, str(v)] for k, v in report["events"].items()]))
    print(
        format_table(("call end", "calls"), [[k, str(v)] for k, v in report["end_reasons"].items()])
    )
    for failing in report["violations"][:20]:
        print(f"seed {failing['seed']}: {failing['schedule']}")
        for violation in failing["violations"]:
            print(f"    {violation}")
        seed = failing["seed"]
        print(f"    replay: .venv/bin/python -m bench.chaos --seed {seed} --schedules 1 --verbose")
