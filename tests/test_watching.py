"""run_while_watching (a streamed response or WebSocket handler in the request's own task) and
the WebSocket MessageQueue: the cheaper forms of Quart's two tasks and asyncio.Queue."""

from __future__ import annotations

import asyncio

import pytest

from royal.watching import run_while_watching
from royal.websocket import MessageQueue


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


async def test_the_queue_gives_items_in_order_to_waiting_and_later_getters() -> None:
    queue = MessageQueue()
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    for item in ("a", "b", "c"):
        await queue.put(item)
    assert await waiting == "a"
    assert [await queue.get(), await queue.get()] == ["b", "c"]
    getters = [asyncio.ensure_future(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    for item in (1, 2, 3):
        await queue.put(item)
    assert sorted(await asyncio.gather(*getters)) == [1, 2, 3]


async def test_a_getter_cancelled_after_being_woken_passes_its_item_on() -> None:
    queue = MessageQueue()
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    await queue.put("only")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "only"
