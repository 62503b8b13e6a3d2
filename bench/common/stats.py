"""Summary statistics of samples, in whatever unit the samples have (the keys name none)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (numpy's linear interpolation), ``None`` for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def stats(values: Sequence[float]) -> dict[str, float | int | None]:
    """``{"n", "p50", "p95", "max"}``, rounded to 3 decimals (``None`` for no values)."""
    return {
        "n": len(values),
        "p50": rounded(percentile(values, 50)),
        "p95": rounded(percentile(values, 95)),
        "max": rounded(max(values)) if values else None,
    }


def count(values: Iterable[str]) -> dict[str, int]:
    """How often each value occurs, in order of first occurrence."""
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
