"""Percentiles and summaries of samples; pure, so a benchmark's arithmetic can be checked."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], p: float) -> float | None:
    """Linear-interpolated percentile (p in 0..100) of samples; None when there are none."""
    if not samples:
        return None
    xs = sorted(samples)
    if len(xs) == 1:
        return xs[0]
    rank = (len(xs) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


def summary(samples: Sequence[float], digits: int = 2) -> dict[str, float | int | None]:
    """n, p50, p90, p99, max and mean, rounded for a report."""

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, digits)

    return {
        "n": len(samples),
        "p50": r(percentile(samples, 50)),
        "p90": r(percentile(samples, 90)),
        "p99": r(percentile(samples, 99)),
        "max": r(max(samples) if samples else None),
        "mean": r(sum(samples) / len(samples) if samples else None),
    }


def ratio(value: float | None, reference: float | None, digits: int = 2) -> float | None:
    """value / reference, or None when either is missing or the reference is zero."""
    if value is None or reference is None or reference == 0:
        return None
    return round(value / reference, digits)
