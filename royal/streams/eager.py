"""Run a coroutine now, in the caller's task, and in a task of its own only if it must wait.

Fan-out calls a stream's ``send`` for every subscriber of an event. A send to a socket with
room in its buffer finishes without ever waiting; giving each one a task (or waking a task per
subscriber to make it) costs more than the send itself. Python 3.12's eager tasks do this;
Royal runs on 3.11 too, so the coroutine is stepped by hand: the first step runs here, and a
coroutine that yields (flow control: the client reads slowly) is finished by a task that
resumes it exactly as a Task would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any


def start(coroutine: Coroutine[Any, Any, None]) -> asyncio.Future[None] | None:
    """Run ``coroutine`` up to its first wait. None when it finished (or raised: the error
    propagates); else a future that completes when it does (cancel it to cancel it)."""
    try:
        waiting = coroutine.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(coroutine, waiting))


async def _finish(coroutine: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Resume ``coroutine`` whenever what it waits on is done, as its Task would have: with
    ``send(None)`` (it reads the future's outcome itself), or by throwing in this task's
    cancellation (Task.cancel has cancelled the future it waited on)."""
    while True:
        thrown: BaseException | None = None
        try:
            await _Wait(waiting)
        except BaseException as error:  # this task was cancelled: pass it on
            thrown = error
        try:
            waiting = coroutine.send(None) if thrown is None else coroutine.throw(thrown)
        except StopIteration:
            return


class _Wait:
    """Await what a coroutine yielded: a future (wait for it) or None (one loop iteration)."""

    __slots__ = ("waiting",)

    def __init__(self, waiting: Any) -> None:
        self.waiting = waiting

    def __await__(self) -> Generator[Any, None, None]:
        if self.waiting is None:
            yield None  # a bare yield (asyncio.sleep(0)): the Task runs it again next loop
        elif not self.waiting.done():
            yield self.waiting  # still flagged as blocking, as the coroutine left it
