"""Readable output: the one fixed-width table formatter every bench prints with, and the
rows and lines the end-to-end benches share."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final


def cell(value: object, digits: int = 2) -> str:
    """A table cell: ``-`` for ``None``, floats with ``digits`` decimals, the rest as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, under the header and a rule of dashes."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def short_cell(value: object) -> str:
    """A cell for figures with one decimal, two where a value needs them (settings such as
    0.45); ``-`` for ``None``."""
    if isinstance(value, float):
        exact = round(value, 1) == value or abs(value) >= 10
        return cell(value, 1 if exact else 2)
    return cell(value)


def format_records(
    records: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: Callable[[object], str] = short_cell,
) -> str:
    """:func:`format_table` of ``columns`` taken from each of ``records`` (missing: ``-``)."""
    return format_table(columns, [[fmt(r.get(c)) for c in columns] for r in records])


METRIC_HEADER: Final = (
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
"""Columns of the end-to-end benches' tables: one row per scenario × metric."""


def verdict(passed: bool | None) -> str:
    """``PASS``/``FAIL``; ``-`` where the target is not judged on this row."""
    return "-" if passed is None else "PASS" if passed else "FAIL"


def stats_row(scenario: str, label: str, metric: Mapping[str, Any]) -> list[str]:
    """A :data:`METRIC_HEADER` row (without the clean-run column) from a metric's
    :func:`bench.common.stats.stats` with its ``target`` and ``pass``."""
    return [
        scenario,
        label,
        str(metric["n"]),
        cell(metric["p50"]),
        cell(metric["p95"]),
        cell(metric["max"]),
        str(metric["target"]),
        verdict(metric["pass"]),
    ]


def pacing_gaps_row(scenario: str, gaps: Mapping[str, Any]) -> list[str]:
    """The pacing-gaps row: underruns inside one item at the caller (count, ms)."""
    target = "target 0" if gaps["pass"] is not None else str(gaps["target"])
    return [
        scenario,
        "pacing gaps",
        "-",
        "-",
        "-",
        "-",
        f"{gaps['count']} gaps / {gaps['ms']:.0f} ms; {target}",
        verdict(gaps["pass"]),
    ]


def clean_column(rows: Sequence[list[str]], valid: bool) -> list[list[str]]:
    """``rows`` with the clean-run column: whether the numbers are the bridge's alone."""
    clean = "yes" if valid else "no (see below)"
    return [[*row, clean] for row in rows]


def print_health(result: dict[str, Any]) -> None:
    """The run's cleanliness and its first problems, under a scenario's summary."""
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
