"""The Prometheus text for a scrape: every worker's values (multiprocess mode) plus the
figures read once from the database by the worker that answers."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Fixed(Collector):
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


class _Process(Collector):
    """This process's own registry (no multiprocess directory: one worker, or tests)."""

    def collect(self) -> Iterator[Metric]:
        return iter(REGISTRY.collect())


def _workers() -> CollectorRegistry:
    """Every worker's values (multiprocess mode), or this process's alone."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Process())
    return registry


def render(shared: Iterable[Metric]) -> bytes:
    registry = _workers()
    registry.register(_Fixed(shared))
    return generate_latest(registry)


def gauge(name: str, documentation: str, values: Mapping[str, float], label: str) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def single(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)


def samples() -> list[Sample]:
    """Every worker's samples, read once (each read opens every worker's file)."""
    return [sample for metric in _workers().collect() for sample in metric.samples]


def totals(found: Iterable[Sample], names: Iterable[str]) -> dict[str, float]:
    """The sum of every sample of each named metric (counters by their ``_total`` sample name):
    the deployment-wide figures for the live snapshot."""
    sums = dict.fromkeys(names, 0.0)
    for sample in found:
        if sample.name in sums:
            sums[sample.name] += sample.value
    return sums


def histogram_buckets(found: Iterable[Sample], name: str) -> dict[float, float]:
    """The cumulative buckets (``le`` -> count) of histogram ``name`` over every label set."""
    buckets: dict[float, float] = {}
    for sample in found:
        if sample.name == f"{name}_bucket":
            le = float(sample.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + sample.value
    return buckets


def server_errors(found: Iterable[Sample]) -> float:
    """HTTP 5xx answers so far."""
    return sum(
        sample.value
        for sample in found
        if sample.name == "royal_http_requests_total" and sample.labels["status"].startswith("5")
    )
