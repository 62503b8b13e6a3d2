"""``python -m bench.turn``: run the scenarios, print the tables, write the JSON."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import trio

import bench.turn
from bench.common.bridge_process import effective_settings
from bench.common.cli import bench_parser, call_counts, choice_list, configure_bench_logging
from bench.common.report import build_report, write_report
from bench.common.scenario import layout, run_scenario
from bench.turn.analysis import (
    FIRST_REPLY_AUDIO_P95_MS,
    GATE_COST_P95_MS,
    TURN_WINDOW_INBOUND_P95_MS,
    TURN_WINDOW_MS,
    analyse,
    compare_gate,
)
from bench.turn.output import print_summary
from bench.turn.plan import (
    SIM_OPTIONS,
    GateMode,
    TurnPlan,
    bridge_settings,
    concurrent_plans,
    sim_and_caller_config,
    single_plans,
)

GATE_MODES: Final[tuple[GateMode, ...]] = ("on", "off")
GATE_OFF_SUFFIX: Final = "-gate-off"


def run_config(gates: Sequence[GateMode]) -> dict[str, Any]:
    """What a turn run measured with: the bridge's settings per gate mode, sim and callers."""
    return {
        "bridge": {f"gate {g}": effective_settings(bridge_settings(g)) for g in gates},
        **sim_and_caller_config(),
        **layout(),
    }


def _planned(args: argparse.Namespace) -> list[tuple[str, list[TurnPlan], bool]]:
    """(name without the gate suffix, plans, one call at a time) of every scenario."""
    planned: list[tuple[str, list[TurnPlan], bool]] = []
    if args.turns_single:
        planned.append(("single", single_plans(args.turns_single), True))
    for calls in args.concurrency_sweep:
        planned.append((f"concurrent-{calls}", concurrent_plans(calls, args.turns_per_call), False))
    return planned


async def _main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for base, plans, sequential in _planned(args):
        for gate in args.gate:
            name = base if gate == "on" else base + GATE_OFF_SUFFIX
            turns = sum(p.turns for p in plans)
            print(
                f"{name}: {len(plans)} calls, {turns} turns, BRIDGE_AUDIO_GATE={gate}", flush=True
            )
            data = await run_scenario(
                name,
                plans,
                sequential=sequential,
                sim_options=SIM_OPTIONS,
                settings=bridge_settings(gate),
                out_dir=args.out.parent,
                log_name=f"bench-turn-{name}.log",
            )
            results[name] = analyse(data, one_call=sequential)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = bench_parser("turn", bench.turn.__doc__, Path("out/bench-turn.json"))
    parser.add_argument(
        "--turns-single", type=int, default=40, help="turns, one call at a time (0: skip)"
    )
    parser.add_argument(
        "--concurrency-sweep",
        type=call_counts,
        default=[10, 20, 40],
        metavar="N,N,...",
        help="concurrent scenarios with these numbers of calls ('' for none)",
    )
    parser.add_argument("--turns-per-call", type=int, default=5, help="in concurrent scenarios")
    parser.add_argument(
        "--gate", type=choice_list(GATE_MODES), default=list(GATE_MODES), help="e.g. on,off"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_bench_logging()
    started = time.monotonic()
    results = trio.run(_main_async, args)
    gate = compare_gate(results, GATE_OFF_SUFFIX)
    print_summary(results, gate)
    config = {
        **run_config(args.gate),
        # Subtracted from every turn latency: each scenario's own is under its
        # ``model_answer_delay``; they differ only if the bridge changed its session.
        "model_answer_delay_ms": sorted(
            {r["model_answer_delay"]["total_ms"] for r in results.values()} - {None}
        ),
        "turn_window_ms": TURN_WINDOW_MS,
    }
    body = {
        "targets": {
            "turn_latency_p95_over_gate_off_ms": GATE_COST_P95_MS,
            "turn_window_inbound_p95_ms": TURN_WINDOW_INBOUND_P95_MS,
            "first_reply_audio_p95_ms": FIRST_REPLY_AUDIO_P95_MS,
            "unforwarded_at_stop_ms": 0,
        },
        "scenarios": results,
        "gate_comparison": gate,
    }
    report = build_report("turn", argv, config, body, started)
    write_report(args.out, report)
    print(f"\nJSON: {args.out} ({report['duration_s']:.0f} s)")
    return 0
