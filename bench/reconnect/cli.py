"""Run the reconnect bench: ``python -m bench.reconnect`` (see :mod:`bench.reconnect`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from bench.common.cli import bench_parser, choice_list, configure_bench_logging
from bench.common.report import build_report, write_report
from bench.common.tables import format_table
from bench.reconnect import trials as trials_mod
from bench.reconnect.long_call import run_long_call
from bench.reconnect.trials import HANDSHAKE_DELAY_MS, TrialKind, check, run_trials, summarize

DEFAULT_OUT = Path("out/bench-reconnect.json")
PARTS = ("close", "stall", "long")


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser("reconnect", __doc__, DEFAULT_OUT)
    parser.add_argument("--parts", type=choice_list(PARTS), default=list(PARTS))
    parser.add_argument("--trials", type=int, default=20, help="per real-time part (20)")
    parser.add_argument("--long-call-s", type=float, default=7200.0, help="virtual (7200)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    configure_bench_logging()
    started = time.monotonic()
    body: dict[str, Any] = {}
    kinds: list[TrialKind] = [k for k in ("close", "stall") if k in args.parts]
    if kinds:
        log_path = args.out.with_suffix(".bridge.log")
        done, by_call = trio.run(run_trials, kinds, args.trials, args.seed, log_path)
        for kind in kinds:
            summary = summarize(kind, done, by_call)
            body[kind] = {**summary, "targets": check(kind, summary)}
    if "long" in args.parts:
        body["long"] = run_long_call(args.long_call_s)
    config = {
        "handshake_delay_ms": HANDSHAKE_DELAY_MS,
        "call_s": trials_mod.CALL_S,
        "break_after_s": trials_mod.BREAK_AFTER_S,
        "sim_generation_speed": 1.0,
        "bridge": "defaults (bridge serve), simulated upstream in this process",
    }
    report = build_report("reconnect", argv, config, body, started)
    write_report(args.out, report)
    _print(body)
    verdicts = [t["pass"] for part in body.values() for t in part["targets"].values()]
    return 0 if all(verdicts) else 1


def _print(body: dict[str, Any]) -> None:
    rows: list[list[str]] = []
    for part, result in body.items():
        for name, target in result["targets"].items():
            rows.append([part, name, str(target["value"]), "pass" if target["pass"] else "FAIL"])
    print(format_table(("part", "target", "measured", "result"), rows))
    for kind in ("close", "stall"):
        if kind in body:
            r = body[kind]
            figures = [("new session heard after the break (s)", r["heard_again_s"])]
            figures.append(("longest silence until then (s)", r["longest_silence_s"]))
            figures.append(("restore gap, bridge-measured (s)", r["restored_gap_s"]))
            if "detected_s" in r:
                figures.append(("stall detected after (s)", r["detected_s"]))
            table = [
                [kind, label, str(s["n"]), str(s["p50"]), str(s["p95"]), str(s["max"])]
                for label, s in figures
            ]
            print(format_table(("part", "figure", "n", "p50", "p95", "max"), table))
    if "long" in body:
        long = body["long"]
        print(
            f"long: {long['duration_s']} s virtual, {long['sessions']} sessions, recycled at "
            f"{long['recycle_ages_s']} s, {long['turns_answered']}/{long['caller_turns']} turns "
            f"answered, {long['cpu_s']} s CPU"
        )
