"""Who is watching which session, across processes: ``agent_sessions.watched_at``.

A reply's stream may be open on any worker of any machine, so "nobody is watching" cannot be
seen from the process generating the reply. Every process records its open agent streams in
the table instead: once when a session gains its first watcher here, every ``interval`` while
it has watchers, and once more when the last one leaves. The reply reads ``watched_at`` and
stops when it is older than the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from royal.db.availability import warn_retrying
from royal.services import agents

if TYPE_CHECKING:
    from royal.db import Database

logger = logging.getLogger(__name__)


class Presence:
    def __init__(self, db: Database, interval: float) -> None:
        self.db = db
        self.interval = interval
        self._watchers: Counter[str] = Counter()
        self._changed: set[str] = set()  # gained a first watcher here, or lost the last one
        self._now = asyncio.Event()  # record the changed sessions at once

    @property
    def watched(self) -> int:
        """Sessions with an open stream in this process."""
        return len(self._watchers)

    @contextmanager
    def watching(self, session_id: str) -> Iterator[None]:
        """Count an open stream on ``session_id`` for the life of the block."""
        self._watchers[session_id] += 1
        if self._watchers[session_id] == 1:
            self._changed.add(session_id)
            self._now.set()
        try:
            yield
        finally:
            self._watchers[session_id] -= 1
            if self._watchers[session_id] <= 0:
                del self._watchers[session_id]
                self._changed.add(session_id)
                self._now.set()

    async def run(self) -> None:
        """Record presence until cancelled: changes at once, every watched session each
        interval."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval
        while True:
            try:
                async with asyncio.timeout_at(due):
                    await self._now.wait()
            except TimeoutError:
                due = loop.time() + self.interval
                await self.record(everything=True)
            else:
                self._now.clear()
                await self.record(everything=False)

    async def record(self, *, everything: bool) -> None:
        sessions = sorted(self._changed | (self._watchers.keys() if everything else set()))
        self._changed.clear()
        if not sessions:
            return
        try:
            await agents.mark_watched(self.db, sessions, time.time())
        except Exception:
            warn_retrying(logger, "recording %d watched sessions failed", len(sessions))
