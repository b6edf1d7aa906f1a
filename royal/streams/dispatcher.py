"""One dispatcher per process: follows the event log and hands new events to the broker.

It reads ``id > cursor`` in pages whenever it is woken: at once by a publish in this process,
by the PostgreSQL listener (NOTIFY carries the new id), or by its own poll timer, which is what
finds events from other processes on SQLite and covers a dropped listener on PostgreSQL.
Reading the table, never a message, is what makes the order and the catch-up exact.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from royal.db.availability import warn_retrying
from royal.streams import log
from royal.streams.event import Event

if TYPE_CHECKING:
    from royal.db import Database
    from royal.streams.broker import Broker

logger = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self, db: Database, broker: Broker, *, poll_seconds: float, page: int = 500
    ) -> None:
        self._db = db
        self._broker = broker
        self._poll_seconds = poll_seconds
        self._page = page
        self._wakeup = asyncio.Event()
        self.cursor = 0
        self._started = False

    def wake(self, hint: int | None = None) -> None:
        """Something may be new in the log (``hint``: the new id, when known)."""
        if hint is None or hint > self.cursor:
            self._wakeup.set()

    async def _start(self) -> None:
        """Begin at the log's end: subscribers that want history replay it themselves.

        Until the database answers, the broker refuses subscriptions (a 503, not a hang).
        """
        delay = 0.1
        while True:
            try:
                self.cursor = await log.latest_id(self._db)
            except Exception as error:
                logger.warning("event log unreachable (%s); retrying in %.1f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                self._broker.attach_dispatcher(self.wake, self.cursor)
                return

    async def run(self) -> None:
        """Follow the log until cancelled. Run again after a failure, it goes on from its
        cursor (royal/background.py restarts it): starting over at the end would skip events."""
        if not self._started:
            await self._start()
            self._started = True
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation.
                async with asyncio.timeout(self._poll_seconds):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                await self.dispatch_new()
            except Exception:
                warn_retrying(logger, "reading the event log failed; retrying")
                await asyncio.sleep(min(self._poll_seconds, 1.0))

    async def dispatch_new(self) -> int:
        """Dispatch everything after the cursor; returns how many events."""
        count = 0
        while True:
            rows = await log.read_since(self._db, self.cursor, limit=self._page)
            for row in rows:
                self._broker.dispatch(Event.from_stored(row))
            if rows:
                self.cursor = rows[-1].id
                count += len(rows)
            if len(rows) < self._page:
                return count
            await asyncio.sleep(0)  # let streams write between pages
