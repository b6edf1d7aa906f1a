"""Interval latency: quantiles of the requests answered between two snapshots, read from the
cumulative request histogram as Prometheus's histogram_quantile reads them."""

from __future__ import annotations

import math

import pytest

from royal.metrics.interval import IntervalLatency, quantile

INF = math.inf


def test_quantiles_interpolate_within_the_bucket() -> None:
    buckets = {0.01: 50.0, 0.1: 100.0, INF: 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.99, buckets) == pytest.approx(0.01 + 0.09 * 49 / 50)


def test_no_observation_has_no_quantile() -> None:
    assert quantile(0.5, {}) is None
    assert quantile(0.5, {0.1: 0.0, INF: 0.0}) is None


def test_beyond_the_last_finite_bucket_the_bound_is_the_answer() -> None:
    assert quantile(0.99, {0.1: 1.0, INF: 10.0}) == 0.1


def test_each_update_covers_only_the_requests_since_the_last() -> None:
    latency = IntervalLatency()
    assert latency.update({0.01: 100.0, 1.0: 100.0, INF: 100.0}) == {"p50": 5.0, "p99": 9.9}
    # 100 more requests, all slow: the old fast ones no longer count.
    assert latency.update({0.01: 100.0, 1.0: 200.0, INF: 200.0}) == {"p50": 505.0, "p99": 990.1}
    assert latency.update({0.01: 100.0, 1.0: 200.0, INF: 200.0}) == {"p50": None, "p99": None}
