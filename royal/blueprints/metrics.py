"""Metrics: `GET /metrics` (the old JSON contract, extended) and `GET /metrics/prometheus`.

Both need a signed-in user unless METRICS_PUBLIC is set (a scraper on a private network). The
JSON describes the worker that answers (`worker_pid`) plus database-wide figures; the
Prometheus text adds up every worker.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Literal

from pydantic import BaseModel, Field
from quart import Blueprint, Response, current_app
from quart_schema import document_response

from royal import metrics
from royal.agents import get_agents
from royal.auth import current_identity, public
from royal.blueprints.system import STARTED_AT
from royal.db import get_db
from royal.metrics import exposition
from royal.openapi import document_content, document_errors
from royal.services import agents, jobs
from royal.streams.extension import get_broker

bp = Blueprint("metrics", __name__)


class StreamFigures(BaseModel):
    sse_open: int
    ws_open: int
    counters: dict[str, int] = Field(description="The realtime layer's counters since start.")


class AgentFigures(BaseModel):
    backend: str
    model: str
    breaker: dict[str, Any] | None = Field(description="The upstream circuit breaker, if any.")


class MetricsOut(BaseModel):
    """The old Flask app's metrics, extended (names in docs/metrics.md)."""

    ok: Literal[True]
    backend: Literal["quart"]
    worker_pid: int
    uptime_seconds: float
    active_sessions: int = Field(description="Agent sessions watched recently, all workers.")
    requests: dict[str, Any] = Field(description="This worker's requests by status and timing.")
    streams: StreamFigures
    jobs: dict[str, int] = Field(description="Unfinished jobs by status, all workers.")
    agent: AgentFigures


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
@document_response(MetricsOut)
@document_errors(401)  # unless METRICS_PUBLIC
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
@document_content(
    "text/plain", {"type": "string"}, description="Prometheus text exposition format 0.0.4."
)
@document_errors(401)  # unless METRICS_PUBLIC
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
