"""Order statistics of a benchmark's samples, the same way in every report."""

from __future__ import annotations

import math
from collections.abc import Iterable


def summary(
    values: Iterable[float], points: tuple[str, ...], scale: float = 1e3
) -> dict[str, float | None]:
    """The named ``points`` of the finite values, times ``scale`` (seconds to ms by default).

    A point is ``count``, ``min``, ``max``, ``mean`` or a percentile: ``p50``, ``p01`` (the
    1st), ``p999`` (the 99.9th). Infinite values stand for samples that never came and are
    left out; with no values left every point but ``count`` is None.
    """
    ordered = sorted(value for value in values if math.isfinite(value))
    found: dict[str, float | None] = {}
    for point in points:
        if point == "count":
            found[point] = len(ordered)
        elif not ordered:
            found[point] = None
        elif point == "min":
            found[point] = ordered[0] * scale
        elif point == "max":
            found[point] = ordered[-1] * scale
        elif point == "mean":
            found[point] = sum(ordered) / len(ordered) * scale
        else:
            digits = point.removeprefix("p")
            fraction = int(digits) / 10 ** len(digits)
            found[point] = ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * scale
    return found
