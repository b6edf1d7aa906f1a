"""The job queue's SQL against real SQLite and PostgreSQL: claims, leases, retries, cancels."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from royal.db import Database, connect_database, migrate
from royal.services import jobs
from royal.streams import log

KINDS = ["work"]


async def test_enqueue_publishes_in_the_same_transaction(database: Database) -> None:
    job = await jobs.enqueue(database, "work", {"n": 1})
    assert job.status == "queued" and job.payload == {"n": 1} and job.attempts == 0
    [event] = await log.read_since(database, 0, topics=["jobs"])
    assert event.event == "job.queued" and f'"id":{job.id}' in event.data
    with pytest.raises(RuntimeError):
        async with database.transaction():
            await jobs.enqueue(database, "work", {"n": 2})
            raise RuntimeError("abort")
    assert len(await log.read_since(database, 0, topics=["jobs"])) == 1
    assert len(await jobs.select_jobs(database)) == 1


async def test_claim_takes_due_jobs_of_known_kinds_in_order(database: Database) -> None:
    later = await jobs.enqueue(database, "work", {}, run_at=time.time() + 60)
    other = await jobs.enqueue(database, "other", {})
    first = await jobs.enqueue(database, "work", {"n": 1})
    second = await jobs.enqueue(database, "work", {"n": 2})
    claimed = await jobs.claim(database, "w1", KINDS, lease_seconds=30)
    assert claimed is not None and claimed.id == first.id
    assert claimed.status == "running" and claimed.attempts == 1 and claimed.lease_owner == "w1"
    assert (await jobs.claim(database, "w1", KINDS, 30)).id == second.id  # type: ignore[union-attr]
    assert await jobs.claim(database, "w1", KINDS, 30) is None  # `later` is not due
    assert await jobs.claim(database, "w1", [], 30) is None
    assert {later.id, other.id} == {j.id for j in await jobs.select_jobs(database, status="queued")}


async def test_racing_workers_run_every_job_exactly_once(database_url: str) -> None:
    # Two Database objects, as two processes would have; eight claim loops in all.
    a = connect_database(database_url, DATABASE_POOL_SIZE=10)
    b = connect_database(database_url, DATABASE_POOL_SIZE=10)
    async with a, b:
        await migrate(a)
        for n in range(200):
            await jobs.enqueue(a, "work", {"n": n})
        runs: Counter[int] = Counter()

        async def worker(db: Database, name: str) -> None:
            while (job := await jobs.claim(db, name, KINDS, 30)) is not None:
                runs[job.id] += 1
                await asyncio.sleep(0)
                assert await jobs.complete(db, job, name, {"by": name}) is not None

        await asyncio.gather(
            *(worker(db, f"{tag}{i}") for tag, db in (("a", a), ("b", b)) for i in range(4))
        )
        assert len(runs) == 200 and set(runs.values()) == {1}
        done = await jobs.select_jobs(a, status="succeeded", limit=500)
        assert len(done) == 200 and {job.attempts for job in done} == {1}


async def test_an_expired_lease_lets_another_worker_take_over(database: Database) -> None:
    await jobs.enqueue(database, "work", {})
    lost = await jobs.claim(database, "dead-worker", KINDS, lease_seconds=0.2)
    assert lost is not None
    assert await jobs.claim(database, "w2", KINDS, 30) is None  # still leased
    await asyncio.sleep(0.3)
    again = await jobs.claim(database, "w2", KINDS, 30)
    assert again is not None and again.id == lost.id and again.attempts == 2
    assert await jobs.renew_lease(database, lost.id, "dead-worker", 30) is None
    assert await jobs.complete(database, lost, "dead-worker", "late") is None  # not its job now
    assert await jobs.complete(database, again, "w2", "ok") is not None


async def test_an_expired_lease_without_attempts_left_fails_the_job(database: Database) -> None:
    job = await jobs.enqueue(database, "work", {}, max_attempts=1)
    assert await jobs.claim(database, "dead-worker", KINDS, lease_seconds=0.1) is not None
    await asyncio.sleep(0.2)
    assert await jobs.claim(database, "w2", KINDS, 30) is None
    failed = await jobs.select_job(database, job.id)
    assert failed is not None and failed.status == "failed"
    assert "lease expired" in (failed.last_error or "")


async def test_failures_back_off_then_fail_for_good(database: Database) -> None:
    job = await jobs.enqueue(database, "work", {}, max_attempts=2)
    first = await jobs.claim(database, "w", KINDS, 30)
    assert first is not None
    retry = await jobs.fail(database, first, "w", "ValueError('boom')", retry_base_seconds=0.2)
    assert (
        retry is not None and retry.status == "queued" and retry.last_error == "ValueError('boom')"
    )
    assert 0.15 < retry.run_at - time.time() < 0.3  # base * 2**0, +-20 %
    assert await jobs.claim(database, "w", KINDS, 30) is None  # not due yet
    await asyncio.sleep(0.3)
    second = await jobs.claim(database, "w", KINDS, 30)
    assert second is not None and second.attempts == 2
    final = await jobs.fail(database, second, "w", "ValueError('again')", retry_base_seconds=0.2)
    assert final is not None and final.status == "failed" and final.finished_at is not None
    events = [e.event for e in await log.read_since(database, 0, topics=["jobs"])]
    assert events == ["job.queued", "job.running", "job.retrying", "job.running", "job.failed"]
    assert (await jobs.select_job(database, job.id)).last_error == "ValueError('again')"  # type: ignore[union-attr]


def test_backoff_grows_and_caps() -> None:
    delays = [jobs.backoff_seconds(attempt, 2.0) for attempt in range(1, 12)]
    assert 1.6 <= delays[0] <= 2.4 and 3.2 <= delays[1] <= 4.8
    assert max(delays) <= 300 * 1.2 and delays[-1] >= 300 * 0.8


async def test_cancel(database: Database) -> None:
    queued = await jobs.enqueue(database, "work", {})
    cancelled = await jobs.cancel(database, queued.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    with pytest.raises(jobs.JobFinished):
        await jobs.cancel(database, queued.id)
    with pytest.raises(jobs.JobNotFound):
        await jobs.cancel(database, 999_999)
    await jobs.enqueue(database, "work", {})
    running = await jobs.claim(database, "w", KINDS, 30)
    assert running is not None
    asked = await jobs.cancel(database, running.id)
    assert asked.status == "running" and asked.cancel_requested
    assert await jobs.renew_lease(database, running.id, "w", 30) is True
    done = await jobs.mark_cancelled(database, running, "w")
    assert done is not None and done.status == "cancelled"


async def test_enqueue_unique_keeps_one_pending(database: Database) -> None:
    assert await jobs.enqueue_unique(database, "work", {}) is not None
    assert await jobs.enqueue_unique(database, "work", {}) is None
    assert await jobs.queue_depth(database) == {"queued": 1, "running": 0}


async def test_claim_many_takes_a_batch_in_order_in_one_go(database: Database) -> None:
    queued = [await jobs.enqueue(database, "work", {"n": n}) for n in range(5)]
    lost = await jobs.enqueue(database, "work", {"n": "lost"}, max_attempts=1)
    # `lost` ran once on a worker that died: no attempts left, it is failed, not claimed.
    await database.execute(
        """UPDATE jobs SET status = 'running', attempts = 1, lease_owner = 'dead',
                  lease_expires_at = :past, run_at = 0 WHERE id = :id""",
        {"id": lost.id, "past": time.time() - 1},
    )
    first = await jobs.claim_many(database, "w1", KINDS, 30, limit=3)
    # `lost` (due first) took one of the three places and was failed instead of claimed.
    assert [job.id for job in first] == [job.id for job in queued[:2]]
    assert all(job.status == "running" and job.lease_owner == "w1" for job in first)
    assert (await jobs.select_job(database, lost.id)).status == "failed"  # type: ignore[union-attr]
    rest = await jobs.claim_many(database, "w2", KINDS, 30, limit=10)
    assert [job.id for job in rest] == [job.id for job in queued[2:]]
    assert await jobs.claim_many(database, "w2", KINDS, 30, limit=10) == []
    running = [
        e for e in await log.read_since(database, 0, topics=["jobs"]) if e.event == "job.running"
    ]
    assert len(running) == 5, "one job.running event per claimed job"
