"""The barge-in bench's readable output: one table row per scenario × metric, then per
scenario the CPU, the load and where the time went."""

from __future__ import annotations

from typing import Any

from bench.common.cpu import describe_cpu, describe_load
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


def table_rows(name: str, result: dict[str, Any]) -> list[list[str]]:
    m = result["metrics"]
    rows = [
        stats_row(name, label, m[key])
        for key, label in (
            ("reaction_ms", "reaction (ms)"),
            ("heard_after_ms", "heard after (ms)"),
            ("truncate_error_ms", "|truncate error| (ms)"),
        )
    ]
    late = m["late_audio_bytes"]
    reply = m["next_reply"]
    gaps = m["pacing_gaps"]
    without_clear = (
        f" ({late['barge_ins_without_clear']} had no clear)" if late["n"] < reply["n"] else ""
    )
    rows += [
        [
            name,
            "late audio forwarded (B)",
            str(late["n"]),
            "-",
            "-",
            cell(late["max"]),
            f"total {late['total']}; {late['target']}{without_clear}",
            verdict(late["pass"]),
        ],
        [
            name,
            "next reply heard",
            str(reply["n"]),
            "-",
            "-",
            "-",
            f"{reply['ok']}/{reply['n']} ok; every time",
            verdict(reply["pass"]),
        ],
        pacing_gaps_row(name, gaps),
    ]
    return clean_column(rows, result["measurement"]["valid"])


def _p(s: dict[str, Any]) -> str:
    return f"p50 {cell(s['p50'])} p95 {cell(s['p95'])}"


def print_summary(results: dict[str, Any]) -> None:
    rows = [row for name, result in results.items() for row in table_rows(name, result)]
    print()
    print(format_table(METRIC_HEADER, rows))
    print()
    for name, result in results.items():
        cpu = result["cpu"]
        offsets = result["cut_in_offset_ms"]
        print(
            f"{name}: {result['calls']} calls ({result['calls_failed']} failed), "
            f"{result['barge_ins_measured']}/{result['barge_ins_planned']} barge-ins measured, "
            f"cut-ins {offsets['min']}..{offsets['max']} ms into the reply; "
            f"wall {cpu['wall_s']:.1f} s; CPU: {describe_cpu(cpu)}; "
            f"caller late frames {result['caller_late_frames']}"
        )
        diag = result["diagnostics"]
        cd, bl, dt = diag["clear_delay_ms"], diag["bench_loop_lag_ms"], diag["detect_ms"]
        print(
            f"  caller speaks -> speech_started written: {_p(dt)} max {cell(dt['max'])} ms; "
            f"speech_started written -> clear at the caller: {_p(cd)} max {cell(cd['max'])} ms; "
            f"bench loop lag p95 {cell(bl['p95'])} max {cell(bl['max'])} ms"
        )
        up, tw = diag["upstream_leg_ms"], diag["twilio_leg_ms"]
        print(f"  of which sim -> bridge reader: {_p(up)} ms; clear written -> caller: {_p(tw)} ms")
        print(f"  {describe_load(result['load'])}")
        print_health(result)
