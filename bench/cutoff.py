"""Caller-perceived cutoff: the caller starts speaking → the AI's audio stops at the caller.

Run from the project root::

    .venv/bin/python -m bench.cutoff --out out/bench-cutoff.json [--n 30] [--modes off,duck]

Same process layout and calls as :mod:`bench.bargein`'s ``single`` scenario (the bridge as
its own process, the simulated upstream and callers here, calls one at a time, cut-ins spread
over 200..3000 ms into the AI's reply), once per ``BRIDGE_FAST_BARGE_IN`` mode:

* ``off``: the caller's audio goes to the upstream, whose server VAD needs ~150 ms of speech
  before ``speech_started``; the bridge clears Twilio when that arrives;
* ``duck``: the bridge's own VAD (audio-gate stage) sees the onset in the inbound frames and
  clears at once, holding the unplayed audio until the server confirms.

The sample is the caller report's ``TurnSummary.caller_overlap_ms`` of each AI turn the caller
talked over: from the first sample of the caller's speech to the moment the AI audio stopped
playing in the caller's Twilio playback model (the ``clear`` handled, or the turn's end if it
was never cut). The barge-in checks of :mod:`bench.bargein` (late audio, truncation error, next
reply) are reported alongside, since a fast cutoff that breaks them is no improvement.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import trio

from bench.bargein.analysis import analyse
from bench.bargein.cli import run_bargein_scenario, run_config
from bench.bargein.plan import BARGE_INS_PER_SINGLE_CALL, FastMode, single_plans
from bench.common.cli import bench_parser, choice_list, configure_bench_logging
from bench.common.cpu import OTHER_PROCESSES
from bench.common.report import build_report, write_report
from bench.common.scenario import OTHER_LOAD_WARN_PCT
from bench.common.stats import percentile, rounded
from bench.common.tables import cell, format_table

MODES: Final[tuple[FastMode, ...]] = ("off", "duck")


async def run_cutoff(
    fast_barge_in: str,
    n: int,
    *,
    per_call: int = BARGE_INS_PER_SINGLE_CALL,
    seed: int = 1,
    out_dir: Path = Path("out"),
) -> dict[str, Any]:
    """``n`` barge-ins with ``BRIDGE_FAST_BARGE_IN=fast_barge_in``; cutoff p50/p95/max (ms)."""
    if fast_barge_in not in MODES:
        raise ValueError(f"fast_barge_in must be one of {', '.join(MODES)}, not {fast_barge_in!r}")
    mode: FastMode = fast_barge_in
    plans = single_plans(n, seed, per_call)
    data = await run_bargein_scenario(
        f"cutoff-{mode}",
        plans,
        sequential=True,
        fast_barge_in=mode,
        out_dir=out_dir,
        log_name=f"bench-cutoff-{mode}.log",
    )
    samples: list[dict[str, Any]] = []
    for run in data.runs:
        if run.report is None:
            continue
        for turn in run.report.ai_turns:
            if turn.caller_overlap_ms is None:
                continue
            samples.append(
                {
                    "call_sid": run.plan.call_sid,
                    "turn": turn.index,
                    "cutoff_ms": round(turn.caller_overlap_ms, 2),
                    "interrupted": turn.interrupted,
                }
            )
    values = [float(s["cutoff_ms"]) for s in samples]
    checks = analyse(data)
    metrics = checks["metrics"]
    return {
        "fast_barge_in": mode,
        "n": len(values),
        "planned": n,
        "p50_ms": rounded(percentile(values, 50), 2),
        "p95_ms": rounded(percentile(values, 95), 2),
        "max_ms": rounded(max(values), 2) if values else None,
        "min_ms": rounded(min(values), 2) if values else None,
        "not_interrupted": sum(1 for s in samples if not s["interrupted"]),
        "checks": {
            "reaction_ms": {k: metrics["reaction_ms"][k] for k in ("n", "p50", "p95", "max")},
            "barge_in_triggers": metrics["reaction_ms"]["by_trigger"],
            "false_alarms_resumed": checks["false_alarms_resumed"],
            "late_audio_bytes": metrics["late_audio_bytes"]["total"],
            "truncate_error_max_abs_ms": metrics["truncate_error_ms"]["max"],
            "next_reply_ok": f"{metrics['next_reply']['ok']}/{metrics['next_reply']['n']}",
            "pacing_gaps": metrics["pacing_gaps"]["count"],
            "all_bargein_targets_pass": checks["pass"],
        },
        "cpu": checks["cpu"],
        "bridge_log": checks["bridge_log"],
        "samples": samples,
    }


async def _run_all(
    modes: Sequence[FastMode], n: int, per_call: int, seed: int, out_dir: Path
) -> list[dict[str, Any]]:
    results = []
    for mode in modes:
        print(f"cutoff: BRIDGE_FAST_BARGE_IN={mode}, {n} barge-ins, one call at a time", flush=True)
        results.append(await run_cutoff(mode, n, per_call=per_call, seed=seed, out_dir=out_dir))
    return results


HEADER: Final = (
    "fast barge-in",
    "n",
    "cutoff p50 ms",
    "p95 ms",
    "max ms",
    "triggers",
    "false alarms",
    "late audio B",
    "next reply ok",
    "bargein targets",
)


def table_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["fast_barge_in"],
            str(r["n"]),
            cell(r["p50_ms"], 1),
            cell(r["p95_ms"], 1),
            cell(r["max_ms"], 1),
            ", ".join(f"{k} {v}" for k, v in r["checks"]["barge_in_triggers"].items()),
            str(r["checks"]["false_alarms_resumed"]),
            str(r["checks"]["late_audio_bytes"]),
            r["checks"]["next_reply_ok"],
            "yes" if r["checks"]["all_bargein_targets_pass"] else "NO",
        ]
        for r in results
    ]


def section_end_to_end(
    n: int,
    *,
    modes: Sequence[FastMode] = MODES,
    per_call: int = BARGE_INS_PER_SINGLE_CALL,
    seed: int = 1,
    out_dir: Path = Path("out"),
) -> tuple[list[dict[str, Any]], str]:
    """Run the cutoff benchmark for each mode; (results, printable table with warnings)."""
    configure_bench_logging()
    results = trio.run(_run_all, list(modes), n, per_call, seed, out_dir)
    lines = [format_table(HEADER, table_rows(results))]
    for r in results:
        other = r["cpu"][OTHER_PROCESSES]["pct_of_one_core"]
        if other is not None and other > OTHER_LOAD_WARN_PCT:
            lines.append(f"WARNING ({r['fast_barge_in']}): other processes used {other}% of a core")
    return results, "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser("cutoff", __doc__, Path("out/bench-cutoff.json"))
    parser.add_argument("--n", type=int, default=30, help="barge-ins per mode")
    parser.add_argument("--per-call", type=int, default=BARGE_INS_PER_SINGLE_CALL)
    parser.add_argument(
        "--modes", type=choice_list(MODES), default=list(MODES), help="e.g. off,duck"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    results, table = section_end_to_end(
        args.n, modes=args.modes, per_call=args.per_call, seed=args.seed, out_dir=args.out.parent
    )
    print()
    print(table)
    body = {
        "metric": "caller speech onset -> AI audio stops at the caller "
        "(TurnSummary.caller_overlap_ms)",
        "results": results,
    }
    config = {mode: run_config(mode) for mode in args.modes}
    report = build_report("cutoff", argv, config, body, started)
    write_report(args.out, report)
    print(f"\nJSON: {args.out} ({report['duration_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
