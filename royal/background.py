"""Background loops that live as long as the server: started with it, restarted if they die.

Each loop (the stream dispatcher, the LISTEN connection, the revocation watcher, ...) handles
its own expected failures and retries. One that still ends while the server runs hit a bug or
a stray cancellation (a driver's timeout that let a CancelledError out): left alone, its worker
would go on serving without it, silently (no dispatcher: every stream on the worker goes
quiet). So it is logged with its traceback and started again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

from quart import Quart

logger = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 1.0


async def supervise(
    name: str, loop: Callable[[], Awaitable[None]], restart_delay: float = RESTART_DELAY_SECONDS
) -> None:
    """Run ``loop()`` until this task is cancelled, starting it again whenever it ends."""
    while True:
        try:
            await loop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the server is stopping
            logger.error("%s: stray cancellation; restarting it", name, exc_info=True)
        except Exception:
            logger.error("%s failed; restarting it", name, exc_info=True)
        else:
            logger.error("%s ended; restarting it", name)
        await asyncio.sleep(restart_delay)


def run_while_serving(app: Quart, name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run ``loop`` under ``supervise`` from startup to shutdown of every serving process."""

    @app.while_serving
    async def _serve() -> AsyncGenerator[None, None]:
        task = asyncio.create_task(supervise(name, loop), name=name)
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
