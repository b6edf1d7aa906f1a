"""What Quart and Hypercorn use of asyncio.Queue and asyncio.Event, in lists.

Every open connection holds one of each: Hypercorn's queue of ASGI messages for the app
(``receive``), Quart's queue of received WebSocket messages, the event h11 waits on for more
to read. asyncio.Queue holds four deques and asyncio.Event one, ~760 bytes each, allocated up
front: ~3.8 KB per connection before anything is queued. These hold a list and futures only
while someone waits (memory per idle SSE stream and WebSocket, W7 in bench/README.md).
"""

from __future__ import annotations

import asyncio
from typing import Any


class MessageQueue:
    """FIFO with ``put`` and ``get``; ``put`` waits while ``maxsize`` items are queued (0: no
    bound), as asyncio.Queue's does, so a flooding client is held back, not buffered."""

    __slots__ = ("_items", "_head", "_getters", "_putters", "_maxsize")

    def __init__(self, maxsize: int = 0) -> None:
        self._items: list[Any] = []
        self._head = 0  # the next item to get: a list pops from the front in O(n)
        self._getters: list[asyncio.Future[None]] = []
        self._putters: list[asyncio.Future[None]] = []
        self._maxsize = maxsize

    def qsize(self) -> int:
        return len(self._items) - self._head

    def full(self) -> bool:
        return 0 < self._maxsize <= self.qsize()

    async def put(self, item: Any) -> None:
        while self.full():
            await _wait_in(self._putters, self._wake_a_putter)
        self._items.append(item)
        _wake_first(self._getters)

    async def get(self) -> Any:
        while self._head == len(self._items):
            await _wait_in(self._getters, self._wake_a_getter)
        item, self._items[self._head] = self._items[self._head], None
        self._head += 1
        if self._head == len(self._items):
            self._items.clear()
            self._head = 0
        _wake_first(self._putters)
        return item

    def _wake_a_getter(self) -> None:
        if self.qsize():
            _wake_first(self._getters)

    def _wake_a_putter(self) -> None:
        if not self.full():
            _wake_first(self._putters)


class Event:
    """asyncio.Event's ``set``, ``clear``, ``is_set`` and ``wait``, with its waiters in a list
    made only when someone waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if not self._set:
            self._set = True
            for waiter in self._waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        if self._waiters is None:
            self._waiters = []
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)


async def _wait_in(waiters: list[asyncio.Future[None]], pass_on: Any) -> None:
    """Wait until woken; a waiter cancelled after being woken passes its wake-up on."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    except asyncio.CancelledError:
        if waiter.done() and not waiter.cancelled():
            waiters.remove(waiter)
            pass_on()
        raise
    finally:
        if waiter in waiters:
            waiters.remove(waiter)


def _wake_first(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
            return
