"""SIGKILL of one worker under load: its stream clients resume on another worker with nothing
lost, and its jobs run again after their lease, but none runs twice to completion.

``python -m bench soak`` runs the same kill with 4 workers and more load.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Awaitable, Callable

import orjson

from bench.reliability_workloads import publish_through_a_disruption
from royal.db import connect_database
from royal.services import jobs
from royal.streams import log
from tests.conftest import LiveRoyal
from tests.fanout import eventually
from tests.test_server import worker_pids

EVENTS = 400
JOBS = 60


async def test_a_killed_worker_loses_no_event_and_completes_no_job_twice(
    live_royal: Callable[..., Awaitable[LiveRoyal]],
) -> None:
    live = await live_royal(
        workers=2, env={"ROYAL_JOB_LEASE_SECONDS": "2", "ROYAL_JOB_POLL_SECONDS": "0.1"}
    )
    async with connect_database(live.database_url) as db:
        queued = [
            await jobs.enqueue(db, "system.sleep", {"seconds": 0.3, "n": n}) for n in range(JOBS)
        ]
    killed: list[int] = []

    async def kill_a_worker() -> None:
        killed.append(worker_pids(live)[0])
        os.kill(killed[0], signal.SIGKILL)

    run = await publish_through_a_disruption(
        live.url, live.tokens["viewer"], live.headers(), kill_a_worker, readers=20, events=EVENTS
    )
    victim = killed[0]

    async def replaced() -> bool:
        pids = worker_pids(live)
        return len(pids) == 2 and victim not in pids

    await eventually(replaced, timeout=15)
    async with connect_database(live.database_url) as db:

        async def all_jobs_done() -> bool:
            return (await jobs.queue_depth(db))["running"] == 0 and len(
                await jobs.select_jobs(db, status="succeeded", kind="system.sleep", limit=JOBS)
            ) == len(queued)

        await eventually(all_jobs_done, timeout=30)
        history = await log.read_since(db, 0, topics=["jobs"], limit=100_000)
    ours = {job.id for job in queued}
    completions = Counter(
        orjson.loads(event.data)["id"]
        for event in history
        if event.event == "job.succeeded" and orjson.loads(event.data)["id"] in ours
    )
    assert set(completions) == ours
    assert set(completions.values()) == {1}, "a job completed twice"
    assert run.complete, "not every reader got every event"
    assert len(run.published) == EVENTS
    assert run.in_order, "out of order or duplicated"
    print(
        f"\nkilled worker {victim}: {EVENTS} events to 20 readers ({run.resumes} resumes), "
        f"{JOBS} jobs each completed once"
    )
