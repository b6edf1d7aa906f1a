"""Copy a worker's in-process counters into its Prometheus metrics (which other workers read
from the shared directory)."""

from __future__ import annotations

from quart import Quart

from royal.metrics.families import CIRCUIT_OPEN, SSE_OPEN, STREAM_EVENTS, WS_OPEN

MIRRORED = ("published", "dispatched", "delivered", "replayed")


def mirror(app: Quart) -> None:
    """Copy this process's stream counters and breaker state into the Prometheus metrics."""
    counters = app.extensions["royal.broker"].counters
    SSE_OPEN.set(counters.sse_open)
    WS_OPEN.set(counters.ws_open)
    done: dict[str, int] = app.extensions["royal.metrics_mirrored"]
    for stage in MIRRORED:
        now = getattr(counters, stage)
        if now > done[stage]:
            STREAM_EVENTS.labels(stage).inc(now - done[stage])
            done[stage] = now
    breaker = getattr(app.extensions["royal.agents"].backend, "breaker", None)
    CIRCUIT_OPEN.set(1 if breaker is not None and breaker.state == "open" else 0)
