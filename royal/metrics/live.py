"""Live metrics: a snapshot on the ephemeral ``metrics`` topic every few seconds.

Each worker publishes to its own subscribers (ephemeral events are not stored, so they never
cross processes); the figures are the whole deployment's anyway: worker totals come from the
shared Prometheus files, the rest from the database. A slow dashboard gets the newest
snapshot, never a backlog (the broker keeps only the latest ephemeral value).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from royal.db.availability import warn_retrying
from royal.metrics import exposition
from royal.metrics.interval import IntervalLatency
from royal.metrics.mirror import mirror
from royal.services import agents, alerts, jobs, settings

if TYPE_CHECKING:
    from quart import Quart

logger = logging.getLogger(__name__)

TOPIC = "metrics"
EVENT = "metrics"
REQUEST_HISTOGRAM = "royal_http_request_duration_seconds"
_TOTALS = (
    "royal_http_requests_total",
    "royal_sse_connections",
    "royal_websocket_connections",
    "royal_workers",
    "royal_agent_circuit_open",
)


class SnapshotPublisher:
    def __init__(self, app: Quart) -> None:
        self.app = app
        self._last: tuple[float, float, float] | None = None  # (monotonic time, requests, 5xx)
        self._latency = IntervalLatency()

    async def run(self) -> None:
        """Publish until cancelled; a failed round is logged and the next one tries again."""
        db = self.app.extensions["royal.db"]
        while True:
            try:
                interval = float(await settings.get_setting(db, "metrics_interval_seconds"))
                await self.publish()
            except Exception:
                warn_retrying(logger, "publishing live metrics failed")
                interval = 5.0
            await asyncio.sleep(interval)

    async def publish(self) -> dict[str, Any]:
        mirror(self.app)
        snapshot = await self.snapshot()
        await self.app.extensions["royal.broker"].publish(TOPIC, EVENT, snapshot)
        return snapshot

    async def snapshot(self) -> dict[str, Any]:
        db = self.app.extensions["royal.db"]
        found = exposition.samples()
        sums = exposition.totals(found, _TOTALS)
        now = time.monotonic()
        requests = sums["royal_http_requests_total"]
        errors = exposition.server_errors(found)
        rate = error_rate = None
        if self._last is not None and now > self._last[0]:
            elapsed = now - self._last[0]
            rate = round(max(0.0, requests - self._last[1]) / elapsed, 2)
            error_rate = round(max(0.0, errors - self._last[2]) / elapsed, 2)
        self._last = (now, requests, errors)
        latency = self._latency.update(exposition.histogram_buckets(found, REQUEST_HISTOGRAM))
        return {
            "at": time.time(),
            "worker_pid": os.getpid(),
            "workers": int(sums["royal_workers"]),
            "requests_total": int(requests),
            "requests_per_second": rate,
            "errors_per_second": error_rate,
            "latency_ms": latency,
            "sse_open": int(sums["royal_sse_connections"]),
            "ws_open": int(sums["royal_websocket_connections"]),
            "jobs": await jobs.queue_depth(db),
            "alerts_active": await alerts.count_active(db),
            "active_sessions": await agents.count_active_sessions(db),
            "agent_circuit_open": sums["royal_agent_circuit_open"] > 0,
        }
