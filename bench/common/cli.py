"""Command-line pieces the end-to-end benches share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from loguru import logger

S = TypeVar("S", bound=str)


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
