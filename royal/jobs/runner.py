"""The job workers of one process: claim, run under a renewed lease, record the outcome.

One claim loop per runner takes as many jobs as it has free slots (``concurrency``) in one
transaction, so idle slots never poll the database on their own and a burst is claimed in a
few statements. It sleeps until the ``jobs`` topic says something was
queued (any process, through the broker) or the poll interval passes (delayed jobs, expired
leases). While a handler runs, its lease is renewed every third of the lease; a renewal that
finds the lease gone (this process stalled and another worker took over) stops the handler. A
cancellation request stops it at once: the ``jobs`` topic carries ``job.cancelling`` to every
process, and the lease renewal is the fallback.

A runner serves one lane of kinds (see ``JobHandlers``): agent replies run in their own lane
with many slots, so they never starve (or are starved by) maintenance and event processing.

A handler sees a stop as ``asyncio.CancelledError``; ``context.cancel_requested()`` tells a
user's cancellation (record the partial work) from a lost lease or a shutdown (the job will
run again elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from royal.db.availability import warn_retrying
from royal.jobs.registry import DEFAULT_LANE, JobContext, JobHandlers
from royal.services import jobs

if TYPE_CHECKING:
    from royal.db import Database
    from royal.services.jobs import Job
    from royal.streams.broker import Broker

logger = logging.getLogger(__name__)

CANCEL_REQUESTED = "cancel requested"
LEASE_LOST = "lease lost"
CLAIM_BATCH = 100  # jobs claimed in one transaction at most


class LeaseLost(Exception):
    """Another worker owns the job now."""


class CancelRequested(Exception):
    """Someone asked for the job to be cancelled."""


class JobRunner:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        handlers: JobHandlers,
        config: dict[str, Any],
        *,
        lane: str = DEFAULT_LANE,
        concurrency: int | None = None,
    ) -> None:
        self.db = db
        self.broker = broker
        self.handlers = handlers
        self.config = config
        self.lane = lane
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = int(config["JOB_CONCURRENCY"] if concurrency is None else concurrency)
        self.lease_seconds = float(config["JOB_LEASE_SECONDS"])
        self.poll_seconds = float(config["JOB_POLL_SECONDS"])
        self.retry_base = float(config["JOB_RETRY_BASE_SECONDS"])
        self._wakeup = asyncio.Event()
        self._work: dict[int, asyncio.Task[Any]] = {}
        self._stop_reason: dict[int, Exception] = {}

    @property
    def running(self) -> set[int]:
        """Ids of the jobs this runner is running now."""
        return set(self._work)

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        """Claim and run jobs, and listen to the ``jobs`` topic, until cancelled."""
        tasks: set[asyncio.Task[None]] = set()
        try:
            await asyncio.gather(self._listen(), self._claim_loop(tasks))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self) -> None:
        while not self.broker.ready:
            await asyncio.sleep(0.1)
        async with self.broker.subscribe([jobs.TOPIC]) as subscription:
            async for batch in subscription:
                for event in batch:
                    if event.event in ("job.queued", "job.retrying"):
                        self.wake()
                    elif event.event == "job.cancelling":
                        job_id = event.as_dict()["data"]["id"]  # type: ignore[index]
                        self.stop(job_id, CancelRequested())

    def stop(self, job_id: int, reason: Exception) -> None:
        """Stop a job this runner is running (no-op for others)."""
        work = self._work.get(job_id)
        if work is not None and not work.done() and job_id not in self._stop_reason:
            self._stop_reason[job_id] = reason
            work.cancel(CANCEL_REQUESTED if isinstance(reason, CancelRequested) else LEASE_LOST)

    async def _claim_loop(self, tasks: set[asyncio.Task[None]]) -> None:
        slot_freed = asyncio.Event()

        def finished(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            slot_freed.set()

        while True:
            room = self.concurrency - len(tasks)
            if room <= 0:
                slot_freed.clear()
                await slot_freed.wait()
                continue
            try:
                claimed = await jobs.claim_many(
                    self.db,
                    self.worker_id,
                    self.handlers.kinds_in(self.lane),
                    self.lease_seconds,
                    limit=min(room, CLAIM_BATCH),
                )
            except Exception:
                warn_retrying(logger, "claiming jobs failed; retrying")
                claimed = []
            if not claimed:
                try:
                    async with asyncio.timeout(self.poll_seconds):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
                self._wakeup.clear()
                continue
            self.broker.wake()
            for job in claimed:
                task = asyncio.create_task(self.execute(job), name=f"royal-{self.lane}-{job.id}")
                tasks.add(task)
                task.add_done_callback(finished)

    async def execute(self, job: Job) -> None:
        """Run one claimed job to its outcome."""
        context = JobContext(
            job,
            self.db,
            self.broker,
            self.config,
            cancel_requested=lambda: isinstance(self._stop_reason.get(job.id), CancelRequested),
        )
        work: asyncio.Task[Any] = asyncio.ensure_future(
            self.handlers[job.kind](context, job.payload)
        )
        self._work[job.id] = work
        keeper = asyncio.create_task(self._keep_lease(job, work))
        try:
            try:
                result = await work
            finally:
                del self._work[job.id]
                reason = self._stop_reason.pop(job.id, None)
        except asyncio.CancelledError:
            if isinstance(reason, CancelRequested):
                await jobs.mark_cancelled(self.db, job, self.worker_id)
            elif not isinstance(reason, LeaseLost):
                raise  # this process is shutting down: the lease will expire and it runs again
        except Exception as error:
            logger.info("job %s (%s) attempt %s failed: %r", job.id, job.kind, job.attempts, error)
            await jobs.fail(
                self.db, job, self.worker_id, repr(error), retry_base_seconds=self.retry_base
            )
        else:
            await jobs.complete(self.db, job, self.worker_id, result)
        finally:
            keeper.cancel()
            self.broker.wake()

    async def _keep_lease(self, job: Job, work: asyncio.Task[Any]) -> None:
        """Renew the lease; stop ``work`` when it is lost or cancellation is requested."""
        while not work.done():
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                cancel = await jobs.renew_lease(self.db, job.id, self.worker_id, self.lease_seconds)
            except Exception:
                warn_retrying(logger, "renewing the lease of job %s failed", job.id)
                continue
            if cancel is None:
                self.stop(job.id, LeaseLost())
            elif cancel:
                self.stop(job.id, CancelRequested())
