"""``python -m bench.bargein``: run the scenarios, print the table, write the JSON."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

import bench.bargein
from bench.bargein.analysis import HEARD_AFTER_P95_MS, TARGETS, TRUNCATE_ERROR_MAX_MS, analyse
from bench.bargein.output import print_summary
from bench.bargein.plan import (
    CONCURRENT_START_SPREAD_S,
    SIM_OPTIONS,
    CallPlan,
    FastMode,
    bridge_settings,
    concurrent_plans,
    sim_and_caller_config,
    single_plans,
)
from bench.common.bridge_process import effective_settings
from bench.common.cli import bench_parser, call_counts, configure_bench_logging
from bench.common.report import build_report, write_report
from bench.common.scenario import ScenarioData, layout, run_scenario


def run_config(fast_barge_in: FastMode) -> dict[str, Any]:
    """What a barge-in run measured with: the bridge's settings, the sim and the callers."""
    return {
        "bridge": effective_settings(bridge_settings(fast_barge_in)),
        **sim_and_caller_config(),
        **layout(),
    }


async def run_bargein_scenario(
    name: str,
    plans: Sequence[CallPlan],
    *,
    sequential: bool,
    fast_barge_in: FastMode,
    out_dir: Path,
    log_name: str | None = None,
) -> ScenarioData[CallPlan]:
    """One barge-in scenario; the bridge's log is ``bench-bargein-<name>.log`` by default."""
    return await run_scenario(
        name,
        plans,
        sequential=sequential,
        sim_options=SIM_OPTIONS,
        settings=bridge_settings(fast_barge_in),
        out_dir=out_dir,
        log_name=log_name or f"bench-bargein-{name}.log",
    )


def _planned(args: argparse.Namespace) -> list[tuple[str, list[CallPlan], bool, str]]:
    """(name, plans, one call at a time, what to print) of every scenario asked for."""
    planned: list[tuple[str, list[CallPlan], bool, str]] = []
    if args.scenario in ("single", "all"):
        plans = single_plans(args.barge_ins_single, args.seed)
        what = f"{len(plans)} calls, {args.barge_ins_single} barge-ins, one call at a time"
        planned.append(("single", plans, True, what))
    if args.scenario in ("concurrent", "all"):
        plans = concurrent_plans(args.calls_concurrent, args.seed + 1)
        what = (
            f"{len(plans)} calls started within {CONCURRENT_START_SPREAD_S:g} s, "
            f"{sum(len(p.offsets_ms) for p in plans)} barge-ins"
        )
        planned.append(("concurrent", plans, False, what))
    names = {name for name, *_ in planned}
    for i, calls in enumerate(args.concurrency_sweep):
        name = f"concurrent-{calls}"
        if name in names:
            name = f"{name}-run{i + 1}"
        names.add(name)
        plans = concurrent_plans(calls, args.seed + 1)
        what = f"{calls} calls, {sum(len(p.offsets_ms) for p in plans)} barge-ins"
        planned.append((name, plans, False, what))
    return planned


async def _main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, plans, sequential, what in _planned(args):
        print(f"{name}: {what}", flush=True)
        data = await run_bargein_scenario(
            name,
            plans,
            sequential=sequential,
            fast_barge_in=args.fast_barge_in,
            out_dir=args.out.parent,
        )
        results[name] = analyse(data)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = bench_parser("bargein", bench.bargein.__doc__, Path("out/bench-bargein.json"))
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
        type=call_counts,
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
    body = {
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
    }
    report = build_report("bargein", argv, run_config(args.fast_barge_in), body, started)
    write_report(args.out, report)
    print(f"\nJSON: {args.out} ({report['duration_s']:.0f} s)")
    return 0
