"""MessageQueue and Event behave as the asyncio.Queue and asyncio.Event they replace in Quart and
Hypercorn: order, bounds that hold a flooding writer back, and wake-ups not lost to
cancellation."""

from __future__ import annotations

import asyncio

from royal.message_queue import Event, MessageQueue


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


async def test_a_bounded_queue_holds_putters_back_until_items_are_taken() -> None:
    queue = MessageQueue(maxsize=2)
    await queue.put(1)
    await queue.put(2)
    assert queue.full()
    third = asyncio.ensure_future(queue.put(3))
    fourth = asyncio.ensure_future(queue.put(4))
    await asyncio.sleep(0)
    assert not third.done() and not fourth.done() and queue.qsize() == 2
    assert await queue.get() == 1
    await asyncio.wait_for(third, 1)
    await asyncio.sleep(0)
    assert not fourth.done()  # one slot freed, one putter let in
    assert [await queue.get(), await queue.get()] == [2, 3]
    await asyncio.wait_for(fourth, 1)
    assert await queue.get() == 4


async def test_a_putter_cancelled_after_being_woken_passes_the_free_slot_on() -> None:
    queue = MessageQueue(maxsize=1)
    await queue.put("a")
    first = asyncio.ensure_future(queue.put("b"))
    second = asyncio.ensure_future(queue.put("c"))
    await asyncio.sleep(0)
    assert await queue.get() == "a"  # wakes the first putter...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.wait_for(second, 1)
    assert first.cancelled()
    assert await queue.get() == "c"


async def test_an_unbounded_queue_never_makes_a_putter_wait() -> None:
    queue = MessageQueue()
    for item in range(1000):
        await queue.put(item)
    assert queue.qsize() == 1000 and not queue.full()


async def test_the_event_wakes_every_waiter_and_stays_set_until_cleared() -> None:
    event = Event()
    waiters = [asyncio.ensure_future(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    event.set()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert event.is_set()
    await asyncio.wait_for(event.wait(), 1)  # already set: returns at once
    event.clear()
    late = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    assert not late.done()
    late.cancel()
    await asyncio.gather(late, return_exceptions=True)
    assert not event._waiters  # a cancelled waiter leaves nothing behind
