"""The job queue over HTTP: enqueue, list, inspect, cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from royal.auth import current_identity, roles_required
from royal.db import get_db
from royal.errors import APIError
from royal.jobs import get_job_handlers
from royal.openapi import document_errors
from royal.pagination import Page, PageQuery, decode_cursor, page_of
from royal.services import jobs
from royal.streams.extension import get_broker

bp = Blueprint("jobs", __name__)

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobIn(BaseModel):
    kind: str = Field(min_length=1, max_length=100, description="A registered job kind.")
    payload: dict[str, Any] = Field(default_factory=dict)
    run_at: AwareDatetime | None = Field(None, description="Not before this time (default: now).")
    max_attempts: int = Field(3, ge=1, le=20)


class JobOut(BaseModel):
    id: int
    kind: str
    payload: dict[str, Any]
    status: Status
    attempts: int
    max_attempts: int
    run_at: datetime
    last_error: str | None
    result: Any
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: jobs.Job) -> JobOut:
        def at(epoch: float | None) -> datetime | None:
            return None if epoch is None else datetime.fromtimestamp(epoch, UTC)

        return cls(
            id=job.id,
            kind=job.kind,
            payload=job.payload,
            status=job.status,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            run_at=at(job.run_at),  # type: ignore[arg-type]
            last_error=job.last_error,
            result=job.result,
            cancel_requested=job.cancel_requested,
            created_at=at(job.created_at),  # type: ignore[arg-type]
            updated_at=at(job.updated_at),  # type: ignore[arg-type]
            finished_at=at(job.finished_at),
        )


class JobQuery(PageQuery):
    status: Status | None = None
    kind: str | None = Field(None, max_length=100)


@bp.post("")
@roles_required("operator")
@validate_request(JobIn)
@validate_response(JobOut, 201)
async def enqueue_job(data: JobIn) -> tuple[JobOut, int]:
    """Queue a job (operators).

    Every Royal process runs workers; the job's state changes stream on the `jobs` topic.
    An unknown kind is refused with 400.
    """
    if data.kind not in get_job_handlers():
        known = ", ".join(get_job_handlers().kinds)
        raise APIError(400, "UNKNOWN_JOB_KIND", f"Unknown job kind {data.kind!r}; known: {known}")
    job = await jobs.enqueue(
        get_db(),
        data.kind,
        data.payload,
        run_at=None if data.run_at is None else data.run_at.timestamp(),
        max_attempts=data.max_attempts,
        created_by=current_identity().user_id,
    )
    get_broker().wake()
    return JobOut.of(job), 201


@bp.get("")
@validate_querystring(JobQuery)
@validate_response(Page[JobOut])
async def list_jobs(query_args: JobQuery) -> Page[JobOut]:
    """List jobs, newest first, filtered by `status` and `kind`; paged by `cursor`."""
    rows = await jobs.select_jobs(
        get_db(),
        status=query_args.status,
        kind=query_args.kind,
        before_id=decode_cursor(query_args.cursor),
        limit=query_args.limit,
    )
    return page_of(rows, query_args.limit, JobOut.of)


@bp.get("/<int:job_id>")
@validate_response(JobOut)
@document_errors(404)
async def get_job(job_id: int) -> JobOut:
    """One job, with its payload, attempts, last error and result."""
    job = await jobs.select_job(get_db(), job_id)
    if job is None:
        raise APIError(404, "JOB_NOT_FOUND", f"No job {job_id}")
    return JobOut.of(job)


@bp.post("/<int:job_id>/cancel")
@roles_required("operator")
@validate_response(JobOut)
@document_errors(404, 409)
async def cancel_job(job_id: int) -> JobOut:
    """Cancel a job (operators): a queued job at once, a running one at its next lease renewal.

    A job that already finished is a 409.
    """
    try:
        job = await jobs.cancel(get_db(), job_id)
    except jobs.JobNotFound:
        raise APIError(404, "JOB_NOT_FOUND", f"No job {job_id}") from None
    except jobs.JobFinished as finished:
        raise APIError(409, "JOB_FINISHED", f"The job already ended ({finished}).") from None
    get_broker().wake()
    return JobOut.of(job)
