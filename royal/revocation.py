"""Revocation reaches open streams: SSE and WebSocket connections watch their access token.

One task per process checks every watched token in a single query each interval (tokens can be
revoked by any worker or machine, so the database decides). A logout in this process fires at
once. Callbacks must be cheap and must not raise: they set an event or cancel a task.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from royal.db.availability import warn_retrying
from royal.services import tokens

if TYPE_CHECKING:
    from royal.db import Database

logger = logging.getLogger(__name__)


class RevocationWatcher:
    def __init__(self, db: Database, interval_seconds: float) -> None:
        self._db = db
        self._interval = interval_seconds
        self._callbacks: defaultdict[int, set[Callable[[], None]]] = defaultdict(set)

    @contextmanager
    def watch(self, token_id: int, on_revoked: Callable[[], None]) -> Iterator[None]:
        """Call ``on_revoked`` once if ``token_id`` dies while the block runs."""
        self._callbacks[token_id].add(on_revoked)
        try:
            yield
        finally:
            callbacks = self._callbacks.get(token_id)
            if callbacks is not None:
                callbacks.discard(on_revoked)
                if not callbacks:
                    del self._callbacks[token_id]

    @property
    def watched(self) -> int:
        return sum(len(callbacks) for callbacks in self._callbacks.values())

    def revoked(self, token_ids: set[int]) -> None:
        """Fire the callbacks of tokens known to be dead (a local logout, or a check)."""
        for token_id in token_ids:
            for callback in self._callbacks.pop(token_id, set()):
                callback()

    async def check(self) -> None:
        if self._callbacks:
            self.revoked(await tokens.select_dead_tokens(self._db, list(self._callbacks)))

    async def run(self) -> None:
        """Check forever; a failing database is logged and retried, never fatal."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception:
                warn_retrying(logger, "token revocation check failed; retrying")
