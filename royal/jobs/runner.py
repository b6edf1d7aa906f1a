"""The job workers of one process: claim, run under a renewed lease, record the outcome.

Workers sleep until the ``jobs`` topic says something was queued (any process, through the
broker) or the poll interval passes (delayed jobs, expired leases). While a handler runs, its
lease is renewed every third of the lease; a renewal that finds the lease gone (this process
stalled and another worker took over) or a cancellation request stops the handler.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from royal.jobs.registry import JobContext, JobHandlers
from royal.services import jobs

if TYPE_CHECKING:
    from royal.db import Database
    from royal.services.jobs import Job
    from royal.streams.broker import Broker

logger = logging.getLogger(__name__)


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
    ) -> None:
        self.db = db
        self.broker = broker
        self.handlers = handlers
        self.config = config
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = int(config["JOB_CONCURRENCY"])
        self.lease_seconds = float(config["JOB_LEASE_SECONDS"])
        self.poll_seconds = float(config["JOB_POLL_SECONDS"])
        self.retry_base = float(config["JOB_RETRY_BASE_SECONDS"])
        self._wakeup = asyncio.Event()
        self.running: set[int] = set()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        """Run the worker loops and the wake-up listener until cancelled."""
        loops = [self._worker() for _ in range(self.concurrency)]
        await asyncio.gather(self._listen(), *loops)

    async def _listen(self) -> None:
        while not self.broker.ready:
            await asyncio.sleep(0.1)
        async with self.broker.subscribe([jobs.TOPIC]) as subscription:
            async for batch in subscription:
                if any(event.event in ("job.queued", "job.retrying") for event in batch):
                    self.wake()

    async def _worker(self) -> None:
        while True:
            try:
                job = await jobs.claim(
                    self.db, self.worker_id, self.handlers.kinds, self.lease_seconds
                )
            except Exception:
                logger.warning("claiming a job failed; retrying", exc_info=True)
                job = None
            if job is None:
                try:
                    async with asyncio.timeout(self.poll_seconds):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
                self._wakeup.clear()
                continue
            self.broker.wake()
            await self.execute(job)

    async def execute(self, job: Job) -> None:
        """Run one claimed job to its outcome."""
        self.running.add(job.id)
        context = JobContext(job, self.db, self.broker, self.config)
        work: asyncio.Task[Any] = asyncio.ensure_future(
            self.handlers[job.kind](context, job.payload)
        )
        keeper = asyncio.create_task(self._keep_lease(job, work))
        try:
            result = await work
        except (LeaseLost, CancelRequested, asyncio.CancelledError) as stop:
            reason = keeper.result() if keeper.done() and not keeper.cancelled() else stop
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
            self.running.discard(job.id)
            self.broker.wake()

    async def _keep_lease(self, job: Job, work: asyncio.Task[Any]) -> Exception | None:
        """Renew the lease; stop ``work`` when it is lost or cancellation is requested."""
        while not work.done():
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                cancel = await jobs.renew_lease(self.db, job.id, self.worker_id, self.lease_seconds)
            except Exception:
                logger.warning("renewing the lease of job %s failed", job.id, exc_info=True)
                continue
            if cancel is None or cancel:
                reason: Exception = LeaseLost() if cancel is None else CancelRequested()
                work.cancel()
                return reason
        return None
