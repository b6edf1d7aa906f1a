"""Metrics: request timing on every route, the realtime layer's counters, the job queue and
the agent backend, as JSON (``/metrics``) and as Prometheus text (``/metrics/prometheus``).

Each worker mirrors its in-process counters into the Prometheus metrics every second, so a
scrape on any worker sees every worker's values (at most a second old) once ``royal serve``
has set PROMETHEUS_MULTIPROC_DIR, and publishes a live snapshot on the ``metrics`` topic
(``royal.metrics.live``) every ``metrics_interval_seconds``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from quart import Quart, Response, current_app, g, request

from royal.metrics.families import WORKERS
from royal.metrics.live import SnapshotPublisher
from royal.metrics.mirror import MIRRORED, mirror
from royal.metrics.requests import RequestStats

__all__ = ["init_app", "mirror", "request_stats"]


def init_app(app: Quart) -> None:
    """Register before auth, so a refused request is timed too."""
    stats = RequestStats()
    app.extensions["royal.request_stats"] = stats
    app.extensions["royal.metrics_mirrored"] = dict.fromkeys(MIRRORED, 0)

    @app.before_request
    async def _start_clock() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    async def _record(response: Response) -> Response:
        started = g.get("metrics_started")
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        elapsed = None if started is None else time.perf_counter() - started
        stats.record(request.method, route, response.status_code, elapsed)
        return response

    @app.while_serving
    async def _mirror_counters() -> AsyncGenerator[None, None]:
        WORKERS.set(1)
        tasks = [
            asyncio.create_task(_mirror_every_second(app), name="royal-metrics"),
            asyncio.create_task(SnapshotPublisher(app).run(), name="royal-live-metrics"),
        ]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        WORKERS.set(0)


async def _mirror_every_second(app: Quart) -> None:
    while True:
        mirror(app)
        await asyncio.sleep(1.0)


def request_stats() -> dict[str, Any]:
    stats: RequestStats = current_app.extensions["royal.request_stats"]
    return stats.snapshot()
