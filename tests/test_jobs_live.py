"""Jobs across real processes: racing workers, and a worker killed in the middle of a job."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import orjson
import pytest

from royal.db import connect_database
from royal.services import jobs
from royal.streams import log
from tests.conftest import LiveRoyal
from tests.test_server import worker_pids


async def wait_until_finished(live: LiveRoyal, count: int, timeout: float) -> None:
    async with connect_database(live.database_url) as db:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            depth = await jobs.queue_depth(db)
            finished = len(
                await jobs.select_jobs(db, status="succeeded", kind="system.sleep", limit=count)
            )
            if finished >= count and depth["running"] == 0:
                return
            await asyncio.sleep(0.2)
    pytest.fail(f"only {finished} of {count} jobs finished: {depth}")


@pytest.mark.postgres
async def test_two_workers_racing_for_500_jobs_run_each_exactly_once(
    live_royal: Callable[..., Awaitable[LiveRoyal]], postgres_url: str
) -> None:
    live = await live_royal(
        workers=2, database_url=postgres_url, env={"ROYAL_JOB_POLL_SECONDS": "0.05"}
    )
    async with connect_database(postgres_url) as db:
        async with db.transaction():  # queued at once, so both workers race from the start
            queued = [
                await jobs.enqueue(db, "system.sleep", {"seconds": 0, "n": n}) for n in range(500)
            ]
    started_at = time.monotonic()
    await wait_until_finished(live, 500, timeout=120)
    print(f"500 jobs on 2 workers: {time.monotonic() - started_at:.1f} s")
    async with connect_database(postgres_url) as db:
        done = await jobs.select_jobs(db, kind="system.sleep", limit=1000)
        stream = await log.read_since(db, 0, topics=["jobs"], limit=10_000)
    assert {job.id for job in done} == {job.id for job in queued}
    assert {job.status for job in done} == {"succeeded"} and {job.attempts for job in done} == {1}
    ours = {job.id for job in queued}
    started = Counter(
        orjson.loads(e.data)["id"]
        for e in stream
        if e.event == "job.running" and orjson.loads(e.data)["id"] in ours
    )
    assert set(started.values()) == {1} and len(started) == 500


async def test_a_job_whose_worker_is_killed_runs_again_after_its_lease(
    live_royal: Callable[..., Awaitable[LiveRoyal]],
) -> None:
    live = await live_royal(env={"ROYAL_JOB_LEASE_SECONDS": "2", "ROYAL_JOB_POLL_SECONDS": "0.2"})
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers(), timeout=10) as http:
        job = (
            await http.post("/jobs", json={"kind": "system.sleep", "payload": {"seconds": 3}})
        ).json()
        for _ in range(100):
            state = (await http.get(f"/jobs/{job['id']}")).json()
            if state["status"] == "running":
                break
            await asyncio.sleep(0.05)
        assert state["status"] == "running" and state["attempts"] == 1
        [worker] = worker_pids(live)
        os.kill(worker, signal.SIGKILL)  # mid-job: no chance to clean up
        killed_at = time.monotonic()
        for _ in range(300):
            try:
                state = (await http.get(f"/jobs/{job['id']}")).json()
            except httpx.TransportError:  # between the kill and the replacement worker
                state = {"status": "?"}
            if state["status"] == "succeeded":
                break
            await asyncio.sleep(0.1)
    assert state["status"] == "succeeded", state
    assert state["attempts"] == 2  # the second run, after the lease ran out
    assert time.monotonic() - killed_at >= 2  # not before the lease expired
