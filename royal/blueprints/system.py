"""What this Royal process is: version, uptime, database, worker, queue and open streams."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from quart import Blueprint, Quart, current_app
from quart_schema import validate_response

import royal
from royal.auth import login_required
from royal.db import get_db
from royal.services import jobs
from royal.streams.extension import get_broker

bp = Blueprint("system", __name__)

STARTED_AT = "royal.started_at"


def init_app(app: Quart) -> None:
    """Remember when this app (this worker process) was built: the origin of the uptime."""
    app.extensions.setdefault(STARTED_AT, time.time())


class DatabaseInfo(BaseModel):
    dialect: str = Field(description="`sqlite` or `postgres`.")


class WorkerInfo(BaseModel):
    id: str = Field(description="`<hostname>:<pid>`, as job leases name their worker.")
    pid: int


class JobCounts(BaseModel):
    queued: int
    running: int


class StreamCounts(BaseModel):
    sse_open: int
    ws_open: int
    subscriptions: int


class SystemOut(BaseModel):
    name: str
    version: str
    started_at: datetime = Field(description="When this worker started (UTC).")
    uptime_seconds: float
    database: DatabaseInfo
    worker: WorkerInfo
    jobs: JobCounts = Field(description="The shared queue, all workers together.")
    streams: StreamCounts = Field(description="Open streams on this worker only.")


@bp.get("/", strict_slashes=False)
@login_required
@validate_response(SystemOut)
async def system_info() -> SystemOut:
    """This worker process: version, uptime, database, job queue and open streams.

    Behind a load balancer with several workers each answers for itself (pid, streams);
    the job counts come from the shared database.
    """
    db = get_db()
    started_at: float = current_app.extensions[STARTED_AT]
    counters = get_broker().counters
    depth = await jobs.queue_depth(db)
    pid = os.getpid()
    return SystemOut(
        name="royal",
        version=royal.__version__,
        started_at=datetime.fromtimestamp(started_at, UTC),
        uptime_seconds=round(time.time() - started_at, 3),
        database=DatabaseInfo(dialect=db.dialect),
        worker=WorkerInfo(id=f"{socket.gethostname()}:{pid}", pid=pid),
        jobs=JobCounts(queued=depth["queued"], running=depth["running"]),
        streams=StreamCounts(
            sse_open=counters.sse_open,
            ws_open=counters.ws_open,
            subscriptions=counters.subscriptions,
        ),
    )
