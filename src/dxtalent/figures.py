"""How the benchmark commands summarise what they measured."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: Sequence[float], fmt: str) -> str:
    """min / median / max of `values` (several runs of one measure), each formatted `fmt`."""
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))
