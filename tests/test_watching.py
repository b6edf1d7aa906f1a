"""run_while_watching: a streamed response or WebSocket handler in the request's own task, the
cheaper form of Quart's two tasks."""

from __future__ import annotations

import asyncio

import pytest

from royal.watching import run_while_watching


async def forever() -> None:
    await asyncio.Event().wait()


async def test_the_work_ending_first_cancels_the_watcher() -> None:
    watcher_cancelled = asyncio.Event()

    async def watcher() -> None:
        try:
            await forever()
        finally:
            watcher_cancelled.set()

    async def work() -> None:
        await asyncio.sleep(0.01)

    await run_while_watching(work(), watcher())
    assert watcher_cancelled.is_set()


async def test_the_watcher_ending_first_cancels_the_work_and_returns() -> None:
    work_cancelled = False

    async def work() -> None:
        nonlocal work_cancelled
        try:
            await forever()
        except asyncio.CancelledError:
            work_cancelled = True
            raise

    async def client_leaves() -> None:
        await asyncio.sleep(0.01)

    await run_while_watching(work(), client_leaves())
    assert work_cancelled
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # nothing left pending on this task
    await asyncio.sleep(0)  # and no stray cancellation arrives later


async def test_a_cancellation_from_outside_propagates() -> None:
    running = asyncio.create_task(run_while_watching(forever(), forever()))
    await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_the_watchers_error_is_raised() -> None:
    async def broken() -> None:
        raise RuntimeError("receive failed")

    with pytest.raises(RuntimeError, match="receive failed"):
        await run_while_watching(forever(), broken())


async def test_work_that_ends_as_the_watcher_does_is_not_cancelled_afterwards() -> None:
    async def quick() -> None:
        await asyncio.sleep(0)

    for _ in range(50):  # both end in the same loop turn, in either order
        await run_while_watching(quick(), quick())
        await asyncio.sleep(0)  # a late cancellation would land here
