"""Command-line pieces the end-to-end benches share."""

from __future__ import annotations

import argparse
import sys

from loguru import logger


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


def configure_bench_logging() -> None:
    """Only warnings from the sim and callers (they log a line per call and session)."""
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
