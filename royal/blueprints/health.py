"""Liveness and readiness probes; public, cheap, and in the old Flask app's shapes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from quart import Blueprint, Response, current_app
from quart_schema import validate_response

from royal.auth import public
from royal.openapi import document_content
from royal.readiness import run_checks

bp = Blueprint("health", __name__)


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, dict[str, Any]]


def _ok() -> Response:
    return Response("ok", status=200, content_type="text/plain; charset=utf-8")


OK = document_content("text/plain", {"const": "ok"}, description="`ok`, as text/plain.")


@bp.get("/health")
@public
@OK
async def health() -> Response:
    """Legacy health check: `ok`.

    Kept for clients of the old Flask app; new probes use /healthz and /readyz.
    """
    return _ok()


@bp.get("/healthz")
@public
@OK
async def healthz() -> Response:
    """Liveness: `ok` as text/plain while the process serves requests."""
    return _ok()


@bp.get("/readyz")
@public
@validate_response(Readiness, 200)
@validate_response(Readiness, 503)
async def readyz() -> tuple[Readiness, int]:
    """Readiness: 200 when every dependency answers, 503 otherwise.

    Checks the database (and, as they are added, the stream listener and the agent backend),
    each within READYZ_TIMEOUT_SECONDS.
    """
    ready, checks = await run_checks(current_app)
    status: Literal["ready", "unavailable"] = "ready" if ready else "unavailable"
    return Readiness(status=status, checks=checks), 200 if ready else 503
