"""Figures from a list of measurements: one percentile, one summary of latencies."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable


def percentile(values: Iterable[float], p: float) -> float | None:
    """The nearest-rank percentile `p` (0-100) of `values`: the smallest value with at least
    p % of them at or below it. 100 is the maximum; None when there are no values."""
    if not 0 <= p <= 100:
        raise ValueError(f"a percentile is between 0 and 100, not {p}")
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_summary(values: Iterable[float], *, digits: int = 3) -> dict[str, float | None]:
    """{"median", "p99", "max"} of a list of latencies, rounded; None for each when empty.

    The median is the middle value (the mean of the two middle ones for an even count);
    p99 and max are nearest-rank, so each is a value that was measured.
    """
    ordered = sorted(values)
    if not ordered:
        return {"median": None, "p99": None, "max": None}
    return {
        "median": round(statistics.median(ordered), digits),
        "p99": round(percentile(ordered, 99), digits),
        "max": round(ordered[-1], digits),
    }
