"""Lighter per-connection parts for Hypercorn: every connection's queue of ASGI messages for
the app and the event h11 waits on are royal/message_queue.py's list-backed forms of
asyncio.Queue and asyncio.Event, which allocate four deques and one up front (~3.8 KB of each
idle SSE stream and WebSocket, W7 in bench/README.md). Applied by royal/hypercorn_fixes.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from hypercorn.asyncio import task_group
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.config import Config

from royal.message_queue import Event, MessageQueue


async def spawn_app_with_a_light_queue(
    self: TaskGroup, app: Any, config: Config, scope: Any, send: Any
) -> Callable[[Any], Awaitable[None]]:
    """Hypercorn's TaskGroup.spawn_app with a MessageQueue: the same bound, no deques."""
    app_queue = MessageQueue(config.max_app_queue_size)

    def _call_soon(func: Callable[..., Any], *args: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(func(*args), self._loop).result()

    self.spawn(
        task_group._handle,
        app,
        config,
        scope,
        app_queue.get,
        send,
        partial(self._loop.run_in_executor, None),
        _call_soon,
    )
    return app_queue.put


class LightEventWrapper:
    """Hypercorn's EventWrapper (its async Event interface) around a list-backed Event."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = Event()

    async def clear(self) -> None:
        self._event.clear()

    async def wait(self) -> None:
        await self._event.wait()

    async def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()
