"""Background loops come back after a failure or a stray cancellation, and stop on shutdown."""

from __future__ import annotations

import asyncio
import logging

import pytest

from royal.background import supervise
from royal.db import Database
from royal.streams import log
from royal.streams.broker import Broker
from royal.streams.dispatcher import Dispatcher
from royal.streams.topics import Topics


async def test_a_loop_that_fails_or_is_cancelled_from_inside_is_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    restarted = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("a bug")
        if runs == 2:
            raise asyncio.CancelledError  # what a driver's leaked timeout looks like
        if runs == 3:
            return
        restarted.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("the loop", loop, restart_delay=0))
    async with asyncio.timeout(5):
        await restarted.wait()
    assert runs == 4
    messages = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert messages == [
        "the loop failed; restarting it",
        "the loop: stray cancellation; restarting it",
        "the loop ended; restarting it",
    ]

    task.cancel()  # the server stopping: no restart
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs == 4


async def test_a_restarted_dispatcher_goes_on_from_its_cursor(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = Broker(database, Topics(["alerts"], []))
    dispatcher = Dispatcher(database, broker, poll_seconds=0.02)
    real_read_since = log.read_since
    failures = 0
    ids: list[int | None] = []

    async def read_since_failing_once(*args: object, **kwargs: object) -> list[log.StoredEvent]:
        nonlocal failures
        if failures == 0 and dispatcher.cursor > 0:
            failures += 1
            # Appended while the dispatcher is down: a restart from the log's end would skip it.
            ids.append((await log.append(database, "alerts", "tick", {"n": "meanwhile"})).id)
            raise asyncio.CancelledError  # not the task's own cancellation: it must come back
        return await real_read_since(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(log, "read_since", read_since_failing_once)
    task = asyncio.create_task(supervise("dispatcher", dispatcher.run, restart_delay=0))
    try:
        async with asyncio.timeout(5):
            while not broker.ready:
                await asyncio.sleep(0.01)
            async with broker.subscribe(["alerts"]) as subscription:
                for n in range(6):
                    published = await broker.publish("alerts", "tick", {"n": n})
                    ids.append(published.id)
                    await asyncio.sleep(0.03)
                received: list[int | None] = []
                while len(received) < len(ids):
                    batch = await subscription.next_batch(timeout=1)
                    assert batch is not None
                    received.extend(event.id for event in batch)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert failures == 1
    assert received == sorted(ids)
