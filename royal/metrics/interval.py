"""Latency over the last snapshot interval, deployment-wide, from the shared request histogram.

The histogram's buckets are cumulative counters in every worker's files; the difference of their
sums between two snapshots is the distribution of the requests answered in between. Quantiles
are read from it the way Prometheus's ``histogram_quantile`` does (linear within a bucket), so
the dashboard and a Grafana panel over ``/metrics/prometheus`` agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

Buckets = dict[float, float]  # upper bound (``le``) -> cumulative count


def quantile(share: float, buckets: Mapping[float, float]) -> float | None:
    """The ``share`` quantile of cumulative ``buckets``; None when they hold no observation."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = share * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


class IntervalLatency:
    """p50/p99 in milliseconds of the requests answered since the previous call."""

    def __init__(self) -> None:
        self._previous: Buckets = {}

    def update(self, cumulative: Buckets) -> dict[str, float | None]:
        # A worker that exits takes its counts along (multiprocess files of dead workers
        # are kept for counters, but be safe): a negative difference counts as none.
        window = {le: max(0.0, n - self._previous.get(le, 0.0)) for le, n in cumulative.items()}
        self._previous = dict(cumulative)
        return {
            name: None if (seconds := quantile(share, window)) is None else round(seconds * 1e3, 2)
            for name, share in (("p50", 0.5), ("p99", 0.99))
        }
