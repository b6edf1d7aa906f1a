"""The job queue's wiring: the handler registry, this process's workers, and the schedule of
built-in maintenance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from quart import Quart, current_app

from royal.db.availability import warn_retrying
from royal.jobs.registry import JobContext, JobHandlers
from royal.jobs.runner import JobRunner
from royal.services import event_handlers, events, jobs, maintenance

__all__ = ["JobContext", "JobHandlers", "get_job_handlers", "init_app"]


def init_app(app: Quart) -> None:
    handlers = JobHandlers()
    handlers.register("maintenance.retention", maintenance.run_retention_job)
    handlers.register(events.PROCESS_KIND, event_handlers.process_event_job)
    handlers.register("system.sleep", maintenance.run_sleep_job)
    app.extensions["royal.jobs"] = handlers

    @app.while_serving
    async def _run_jobs() -> AsyncGenerator[None, None]:
        tasks = []
        if app.config["JOB_WORKERS_ENABLED"]:
            for lane, concurrency in handlers.lanes.items():
                runner = JobRunner(
                    app.extensions["royal.db"],
                    app.extensions["royal.broker"],
                    handlers,
                    app.config,
                    lane=lane,
                    concurrency=concurrency,
                )
                tasks.append(asyncio.create_task(runner.run(), name=f"royal-{lane}"))
            tasks.append(asyncio.create_task(_schedule_maintenance(app), name="royal-maintenance"))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _schedule_maintenance(app: Quart) -> None:
    """Queue ``maintenance.retention`` every interval, unless one is already queued or running
    (every process runs this loop; the queue keeps it to one job at a time)."""
    db = app.extensions["royal.db"]
    broker = app.extensions["royal.broker"]
    while True:
        try:
            if await jobs.enqueue_unique(db, "maintenance.retention", {}):
                broker.wake()
        except Exception:
            warn_retrying(app.logger, "scheduling maintenance failed; retrying")
        await asyncio.sleep(app.config["MAINTENANCE_INTERVAL_SECONDS"])


def get_job_handlers() -> JobHandlers:
    handlers: JobHandlers = current_app.extensions["royal.jobs"]
    return handlers
