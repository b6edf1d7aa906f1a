"""The durable job queue: enqueue, claim with a lease, renew, finish, retry, cancel.

Every state change publishes on the ``jobs`` topic in the same transaction, so the stream and
the table never disagree. Claiming is safe with many processes and machines: PostgreSQL skips
rows other workers hold (FOR UPDATE SKIP LOCKED); SQLite has one writer at a time anyway.
A job whose worker died keeps its row in ``running`` until the lease runs out, then it is
claimable again (or failed, when it has no attempts left).
"""

from __future__ import annotations

import random
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from royal.json_provider import dumps_bytes
from royal.streams import log

if TYPE_CHECKING:
    from royal.db import Database

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED = ("succeeded", "failed", "cancelled")
TOPIC = "jobs"

_COLUMNS = """id, kind, payload, status, attempts, max_attempts, run_at, lease_owner,
    lease_expires_at, cancel_requested, last_error, result, created_by, created_at, updated_at,
    finished_at"""


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    payload: Any
    status: Status
    attempts: int
    max_attempts: int
    run_at: float
    lease_owner: str | None
    lease_expires_at: float | None
    cancel_requested: bool
    last_error: str | None
    result: Any
    created_by: int | None
    created_at: float
    updated_at: float
    finished_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        values = dict(row._mapping)
        values["payload"] = orjson.loads(values["payload"])
        values["result"] = None if values["result"] is None else orjson.loads(values["result"])
        values["cancel_requested"] = bool(values["cancel_requested"])
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        """What the ``jobs`` stream carries: the state, not the (possibly large) payload."""
        keep = ("id", "kind", "status", "attempts", "max_attempts", "run_at", "last_error")
        return {key: value for key, value in asdict(self).items() if key in keep} | {
            "finished_at": self.finished_at
        }


class JobNotFound(LookupError):
    pass


class JobFinished(Exception):
    """The job already ended; it cannot be cancelled."""


async def _changed(db: Database, row: Any, event: str) -> Job:
    job = Job.from_row(row)
    await log.append(db, TOPIC, event, job.summary())
    return job


async def enqueue(
    db: Database,
    kind: str,
    payload: Any,
    *,
    run_at: float | None = None,
    max_attempts: int = 3,
    created_by: int | None = None,
) -> Job:
    """Queue a job; the caller wakes the broker after this commits (runners listen on ``jobs``)."""
    now = time.time()
    async with db.transaction():
        row = await db.fetch_one(
            f"""INSERT INTO jobs (kind, payload, status, max_attempts, run_at, created_by,
                                  created_at, updated_at)
                     VALUES (:kind, :payload, 'queued', :max_attempts, :run_at, :created_by,
                             :now, :now)
                  RETURNING {_COLUMNS}""",
            {
                "kind": kind,
                "payload": dumps_bytes(payload).decode(),
                "max_attempts": max_attempts,
                "run_at": now if run_at is None else run_at,
                "created_by": created_by,
                "now": now,
            },
        )
        return await _changed(db, row, "job.queued")


async def enqueue_unique(db: Database, kind: str, payload: Any) -> Job | None:
    """Queue a job unless one of ``kind`` is already queued or running (periodic chores)."""
    async with db.transaction():
        pending = await db.fetch_val(
            """SELECT count(*) FROM jobs WHERE kind = :kind AND status IN ('queued', 'running')""",
            {"kind": kind},
        )
        if pending:
            return None
        return await enqueue(db, kind, payload)


async def claim(
    db: Database, worker: str, kinds: Collection[str], lease_seconds: float
) -> Job | None:
    """Take the next runnable job of ``kinds`` for ``worker``, or None when there is none."""
    claimed = await claim_many(db, worker, kinds, lease_seconds, limit=1)
    return claimed[0] if claimed else None


async def claim_many(
    db: Database, worker: str, kinds: Collection[str], lease_seconds: float, *, limit: int
) -> list[Job]:
    """Take up to ``limit`` runnable jobs of ``kinds`` for ``worker``, oldest due first, in one
    transaction (a burst of a thousand agent replies is claimed in a few statements, not a
    thousand transactions queued behind the writer).

    Runnable: queued and due, or running with an expired lease (its worker died). An expired
    job without attempts left is failed instead, and the search goes on.
    """
    if not kinds or limit < 1:
        return []
    names = {f"k{i}": kind for i, kind in enumerate(kinds)}
    in_kinds = ", ".join(f":{name}" for name in names)
    skip_locked = " FOR UPDATE SKIP LOCKED" if db.dialect == "postgres" else ""
    while True:
        now = time.time()
        async with db.transaction():
            candidates = await db.fetch_all(
                f"""SELECT id, status, attempts, max_attempts
                      FROM jobs
                     WHERE kind IN ({in_kinds})
                       AND ((status = 'queued' AND run_at <= :now)
                            OR (status = 'running' AND lease_expires_at < :now))
                     ORDER BY run_at, id
                     LIMIT :limit{skip_locked}""",
                {**names, "now": now, "limit": limit},
            )
            spent = {
                c["id"]: c["attempts"]
                for c in candidates
                if c["status"] == "running" and c["attempts"] >= c["max_attempts"]
            }
            for job_id, attempts in spent.items():
                error = f"worker lost (lease expired) on attempt {attempts}"
                await _finish(db, job_id, "failed", now, error=error)
            ids = {f"j{n}": c["id"] for n, c in enumerate(candidates) if c["id"] not in spent}
            if not ids:
                if spent:
                    continue
                return []
            rows = await db.fetch_all(
                f"""UPDATE jobs
                       SET status = 'running', attempts = attempts + 1, lease_owner = :worker,
                           lease_expires_at = :until, updated_at = :now
                     WHERE id IN ({", ".join(":" + name for name in ids)})
                 RETURNING {_COLUMNS}""",
                {**ids, "worker": worker, "until": now + lease_seconds, "now": now},
            )
            claimed = sorted((Job.from_row(row) for row in rows), key=lambda j: (j.run_at, j.id))
            await log.append_many(db, [(TOPIC, "job.running", j.summary()) for j in claimed])
            return claimed


async def renew_lease(db: Database, job_id: int, worker: str, lease_seconds: float) -> bool | None:
    """Extend the lease; returns whether cancellation was requested, or None if the lease is
    no longer ours (it expired and another worker took the job)."""
    now = time.time()
    cancel = await db.fetch_val(
        """UPDATE jobs
              SET lease_expires_at = :until, updated_at = :now
            WHERE id = :id AND lease_owner = :worker AND status = 'running'
        RETURNING cancel_requested""",
        {"id": job_id, "worker": worker, "until": now + lease_seconds, "now": now},
    )
    return None if cancel is None else bool(cancel)


async def complete(db: Database, job: Job, worker: str, result: Any) -> Job | None:
    """Mark a job succeeded, if this worker still holds it."""
    async with db.transaction():
        row = await db.fetch_one(
            f"""UPDATE jobs
                   SET status = 'succeeded', result = :result, finished_at = :now,
                       updated_at = :now, lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = :id AND lease_owner = :worker AND status = 'running'
             RETURNING {_COLUMNS}""",
            {
                "id": job.id,
                "worker": worker,
                "result": dumps_bytes(result).decode(),
                "now": time.time(),
            },
        )
        return None if row is None else await _changed(db, row, "job.succeeded")


def backoff_seconds(attempt: int, base: float, cap: float = 300.0) -> float:
    """Exponential backoff with +-20 % jitter, so retries of many failed jobs spread out."""
    return float(min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2))


async def fail(
    db: Database, job: Job, worker: str, error: str, *, retry_base_seconds: float
) -> Job | None:
    """Record a failed attempt: queue a retry after a backoff, or fail for good."""
    now = time.time()
    async with db.transaction():
        if job.attempts < job.max_attempts:
            row = await db.fetch_one(
                f"""UPDATE jobs
                       SET status = 'queued', run_at = :run_at, last_error = :error,
                           updated_at = :now, lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = :id AND lease_owner = :worker AND status = 'running'
                 RETURNING {_COLUMNS}""",
                {
                    "id": job.id,
                    "worker": worker,
                    "error": error[:2000],
                    "now": now,
                    "run_at": now + backoff_seconds(job.attempts, retry_base_seconds),
                },
            )
            return None if row is None else await _changed(db, row, "job.retrying")
        return await _finish(db, job.id, "failed", now, error=error, worker=worker)


async def mark_cancelled(db: Database, job: Job, worker: str) -> Job | None:
    async with db.transaction():
        return await _finish(db, job.id, "cancelled", time.time(), worker=worker)


async def _finish(
    db: Database,
    job_id: int,
    status: Status,
    now: float,
    *,
    error: str | None = None,
    worker: str | None = None,
) -> Job | None:
    owner = "AND lease_owner = :worker" if worker is not None else ""
    values: dict[str, Any] = {"id": job_id, "status": status, "now": now, "error": error}
    if worker is not None:
        values["worker"] = worker
    row = await db.fetch_one(
        f"""UPDATE jobs
               SET status = :status, finished_at = :now, updated_at = :now,
                   last_error = coalesce(:error, last_error),
                   lease_owner = NULL, lease_expires_at = NULL
             WHERE id = :id AND status NOT IN ('succeeded', 'failed', 'cancelled') {owner}
         RETURNING {_COLUMNS}""",
        values,
    )
    return None if row is None else await _changed(db, row, f"job.{status}")


async def cancel(db: Database, job_id: int) -> Job:
    """Cancel a queued job at once; ask the worker of a running one to stop."""
    async with db.transaction():
        job = await select_job(db, job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.status in FINISHED:
            raise JobFinished(job.status)
        if job.status == "queued":
            cancelled = await _finish(db, job_id, "cancelled", time.time())
            assert cancelled is not None
            return cancelled
        row = await db.fetch_one(
            f"""UPDATE jobs SET cancel_requested = 1, updated_at = :now
                 WHERE id = :id
             RETURNING {_COLUMNS}""",
            {"id": job_id, "now": time.time()},
        )
        return await _changed(db, row, "job.cancelling")


async def select_job(db: Database, job_id: int) -> Job | None:
    row = await db.fetch_one(f"SELECT {_COLUMNS} FROM jobs WHERE id = :id", {"id": job_id})
    return None if row is None else Job.from_row(row)


async def select_jobs(
    db: Database,
    *,
    status: str | None = None,
    kind: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Job]:
    """Newest first; fetches ``limit + 1`` so the caller knows whether another page exists."""
    filters, values = ["1 = 1"], {"limit": limit + 1}
    for column, value in (("status", status), ("kind", kind)):
        if value is not None:
            filters.append(f"{column} = :{column}")
            values[column] = value  # type: ignore[assignment]
    if before_id is not None:
        filters.append("id < :before_id")
        values["before_id"] = before_id
    rows = await db.fetch_all(
        f"""SELECT {_COLUMNS} FROM jobs
             WHERE {" AND ".join(filters)}
             ORDER BY id DESC
             LIMIT :limit""",
        values,
    )
    return [Job.from_row(row) for row in rows]


async def queue_depth(db: Database) -> dict[str, int]:
    """How many jobs are in each unfinished state."""
    rows = await db.fetch_all(
        """SELECT status, count(*) AS n FROM jobs
            WHERE status IN ('queued', 'running') GROUP BY status"""
    )
    return {"queued": 0, "running": 0} | {row["status"]: int(row["n"]) for row in rows}
