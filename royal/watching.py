"""Await work in the current task while a watcher task may end it: the cheap form of
``asyncio.wait([work, watcher], return_when=FIRST_COMPLETED)``.

A streamed HTTP response waits for the client to leave, a WebSocket handler for its socket
to close. Quart runs both sides as tasks; here the work stays in the request's own task and
only the watcher gets one, which cancels the work if it ends first. Every open SSE stream and
WebSocket holds one task and one asyncio.wait less (memory per idle connection, W7).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, cast

from quart.utils import cancel_tasks


async def run_while_watching(work: Awaitable[None], watcher: Coroutine[Any, Any, None]) -> None:
    """Await ``work``; if ``watcher`` ends first, ``work`` is cancelled and this returns (or
    raises the watcher's error). A cancellation from outside still propagates."""
    task = asyncio.current_task()
    assert task is not None
    working, stopped = True, False

    def on_watcher_done(done: asyncio.Future[None]) -> None:
        nonlocal stopped
        if working and not done.cancelled():
            stopped = True
            task.cancel()

    watching = asyncio.ensure_future(watcher)
    watching.add_done_callback(on_watcher_done)
    try:
        await work
    except asyncio.CancelledError:
        if not stopped or task.uncancel() > 0:
            raise  # cancelled from outside (a server shutting down): not ours to swallow
    finally:
        working = False  # a done callback already queued must not cancel us any more
        if not watching.done():  # also when cancelled: the watcher may not outlive the work
            await cancel_tasks({watching})
    if not watching.cancelled() and watching.exception() is not None:
        raise cast(BaseException, watching.exception())
