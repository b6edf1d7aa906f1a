"""eager.start: a coroutine runs in the caller's task until it must wait, then as a Task would."""

from __future__ import annotations

import asyncio

import pytest

from royal.streams import eager


async def test_a_coroutine_that_never_waits_finishes_in_the_call() -> None:
    steps: list[str] = []

    async def write() -> None:
        steps.append("wrote")

    assert eager.start(write()) is None
    assert steps == ["wrote"]


async def test_a_coroutine_that_waits_is_finished_by_a_task() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def write() -> None:
        steps.append("before")
        steps.append(await gate)
        await asyncio.sleep(0)  # a bare yield, too
        steps.append("after")

    pending = eager.start(write())
    assert pending is not None and steps == ["before"]
    gate.set_result("resumed")
    await asyncio.wait_for(pending, 1)
    assert steps == ["before", "resumed", "after"]


async def test_errors_reach_the_caller_or_the_future() -> None:
    async def fails_at_once() -> None:
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError):
        eager.start(fails_at_once())

    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def fails_later() -> None:
        await gate

    pending = eager.start(fails_later())
    assert pending is not None
    gate.set_exception(BrokenPipeError("late"))
    with pytest.raises(BrokenPipeError):
        await pending


async def test_cancelling_the_future_cancels_the_coroutine_where_it_waits() -> None:
    lock = asyncio.Lock()
    await lock.acquire()  # held elsewhere: the write must wait for it
    seen: list[str] = []

    async def write() -> None:
        try:
            async with lock:
                seen.append("never")
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    pending = eager.start(write())
    assert pending is not None
    await asyncio.sleep(0)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert seen == ["cancelled"]
    lock.release()
    async with asyncio.timeout(1):
        async with lock:  # the cancelled waiter left the lock usable
            pass
