"""Metrics: `GET /metrics` (the old JSON contract, extended) and `GET /metrics/prometheus`.

Both need a signed-in user unless METRICS_PUBLIC is set (a scraper on a private network). The
JSON describes the worker that answers (`worker_pid`) plus database-wide figures; the
Prometheus text adds up every worker.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from quart import Blueprint, Response, current_app

from royal import metrics
from royal.agents import get_agents
from royal.auth import current_identity, public
from royal.blueprints.system import STARTED_AT
from royal.db import get_db
from royal.metrics import exposition
from royal.services import agents, jobs
from royal.streams.extension import get_broker

bp = Blueprint("metrics", __name__)


def _check_access() -> None:
    if not current_app.config["METRICS_PUBLIC"]:
        current_identity()  # 401 for anonymous callers


async def _shared() -> tuple[dict[str, int], int]:
    """Figures every worker shares, read from the database: queue depth, active sessions."""
    db = get_db()
    depth = await jobs.queue_depth(db)
    active = await agents.count_active_sessions(db)
    return depth, active


@bp.get("/metrics")
@public
async def metrics_json() -> dict[str, Any]:
    """This worker's metrics as JSON: `{"ok": true, "backend": "quart", "uptime_seconds",
    "active_sessions", ...}` with requests, streams, the job queue and the agent backend."""
    _check_access()
    depth, active = await _shared()
    backend = get_agents().backend
    breaker = getattr(backend, "breaker", None)
    started: float = current_app.extensions[STARTED_AT]
    counters = dataclasses.asdict(get_broker().counters)
    return {
        "ok": True,
        "backend": "quart",
        "worker_pid": os.getpid(),
        "uptime_seconds": round(time.time() - started, 3),
        "active_sessions": active,
        "requests": metrics.request_stats(),
        "streams": {"sse_open": counters["sse_open"], "ws_open": counters["ws_open"]}
        | {"counters": counters},
        "jobs": depth,
        "agent": {
            "backend": backend.name,
            "model": backend.model,
            "breaker": None if breaker is None else breaker.status(),
        },
    }


@bp.get("/metrics/prometheus")
@public
async def metrics_prometheus() -> Response:
    """Prometheus text exposition, every worker added up (names in docs/metrics.md)."""
    _check_access()
    metrics.mirror(current_app._get_current_object())  # type: ignore[attr-defined]
    depth, active = await _shared()
    text = exposition.render(
        [
            exposition.gauge("royal_jobs", "Unfinished jobs by status.", depth, "status"),
            exposition.single(
                "royal_agent_sessions_active",
                f"Agent sessions watched in the last {agents.ACTIVE_SECONDS:g} s.",
                active,
            ),
        ]
    )
    return Response(text, content_type=exposition.CONTENT_TYPE)
