"""Command-line pieces the end-to-end benches share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from loguru import logger

S = TypeVar("S", bound=str)


def bench_parser(bench: str, doc: str | None, default_out: Path | None) -> argparse.ArgumentParser:
    """The parser every bench starts from: ``python -m bench.<bench>``, the first line of the
    bench's docstring as its description, and ``--out`` for the JSON report (without a
    default, no report is written unless asked for)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m bench.{bench}", description=(doc or "").split("\n")[0]
    )
    if default_out is None:
        parser.add_argument("--out", type=Path, help="write the JSON report here")
    else:
        parser.add_argument("--out", type=Path, default=default_out)
    return parser


def call_counts(text: str) -> list[int]:
    """``argparse`` type of a list of numbers of calls: ``"10,20,40"`` → ``[10, 20, 40]``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas: {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("numbers of calls must be >= 1")
    return values


def choice_list(allowed: Sequence[S]) -> Callable[[str], list[S]]:
    """``argparse`` type of a non-empty list of ``allowed`` values: ``"on,off"``."""

    def parse(text: str) -> list[S]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        chosen = [a for part in parts for a in allowed if a == part]
        if not parts or len(chosen) != len(parts):
            raise argparse.ArgumentTypeError(f"expected some of {', '.join(allowed)}: {text!r}")
        return chosen

    return parse


def configure_bench_logging() -> None:
    """Only warnings from the sim and callers (they log a line per call and session)."""
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
