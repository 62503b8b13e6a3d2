"""The turn bench's readable output: the metric table, the gate comparison, the CPU table,
then per scenario where the time went."""

from __future__ import annotations

from typing import Any

from bench.common.cpu import OTHER_PROCESSES, describe_cpu, describe_load
from bench.common.scenario import BENCH, BRIDGE
from bench.common.tables import (
    METRIC_HEADER,
    cell,
    clean_column,
    format_table,
    pacing_gaps_row,
    print_health,
    stats_row,
    verdict,
)

GATE_HEADER = (
    "scenario",
    "turn latency p50 on / off / diff (ms)",
    "p95 on / off / diff (ms)",
    "target",
    "result",
)
CPU_HEADER = (
    "scenario",
    "calls at once",
    "call-minutes",
    "bridge CPU s per call-minute",
    "bench",
    "other processes",
    "bridge % of a core",
    "clean run",
)


def table_rows(name: str, result: dict[str, Any], gate: dict[str, Any]) -> list[list[str]]:
    m = result["metrics"]
    latency = stats_row(name, "turn latency (ms)", m["turn_latency_ms"])
    if name in gate:
        latency[-1] = verdict(gate[name]["pass"])
    unforwarded = m["unforwarded_at_stop_ms"]
    gaps = m["pacing_gaps"]
    rows = [
        latency,
        stats_row(name, "turn-window inbound (ms)", m["turn_window_inbound_ms"]),
        stats_row(name, "first reply audio (ms)", m["first_reply_audio_ms"]),
        [
            *stats_row(name, "unforwarded at stop (ms)", unforwarded)[:6],
            f"total {unforwarded['total']}; {unforwarded['target']}",
            verdict(unforwarded["pass"]),
        ],
        pacing_gaps_row(name, gaps),
    ]
    return clean_column(rows, result["measurement"]["valid"])


def _trio(figures: dict[str, Any]) -> str:
    return " / ".join(cell(figures[k]) for k in ("gate_on", "gate_off", "difference"))


def gate_rows(gate: dict[str, Any]) -> list[list[str]]:
    return [
        [
            name,
            _trio(row["turn_latency_p50_ms"]),
            _trio(row["turn_latency_p95_ms"]),
            row["target"],
            verdict(row["pass"]),
        ]
        for name, row in gate.items()
    ]


def cpu_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, result in results.items():
        load = result["load"]
        per_minute = {k: v["cpu_s_per_call_minute"] for k, v in load.items() if isinstance(v, dict)}
        rows.append(
            [
                name,
                cell(load["mean_concurrent_calls"], 1),
                cell(load["call_seconds"] / 60.0, 1),
                cell(per_minute.get(BRIDGE), 3),
                cell(per_minute.get(BENCH), 3),
                cell(per_minute.get(OTHER_PROCESSES), 3),
                cell(result["cpu"][BRIDGE]["pct_of_one_core"], 1),
                "yes" if result["measurement"]["valid"] else "no",
            ]
        )
    return rows


def print_summary(results: dict[str, Any], gate: dict[str, Any]) -> None:
    rows = [row for name, result in results.items() for row in table_rows(name, result, gate)]
    print()
    print(format_table(METRIC_HEADER, rows))
    if gate:
        print()
        print(format_table(GATE_HEADER, gate_rows(gate)))
    print()
    print(format_table(CPU_HEADER, cpu_rows(results)))
    print()
    for name, result in results.items():
        diag = result["diagnostics"]
        detected, lag = diag["turn_end_detected_ms"], diag["bench_loop_lag_ms"]
        delay = result["model_answer_delay"]["total_ms"]
        print(
            f"{name}: {result['calls']} calls ({result['calls_failed']} failed), gate "
            f"{result['audio_gate']}, {result['turns_measured']}/{result['turns_planned']} turns "
            f"measured, model answer delay {delay} ms subtracted; "
            f"wall {result['cpu']['wall_s']:.1f} s; CPU: {describe_cpu(result['cpu'])}"
        )
        print(
            f"  last speech frame -> speech_stopped written, minus the silence: p50 "
            f"{cell(detected['p50'])} p95 {cell(detected['p95'])} max {cell(detected['max'])} ms; "
            f"bench loop lag p95 {cell(lag['p95'])} max {cell(lag['max'])} ms; "
            f"caller late frames {result['caller_late_frames']}"
        )
        print(f"  {describe_load(result['load'])}")
        print_health(result)
