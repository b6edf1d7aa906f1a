"""Token deltas of every reply in this process, written to the event log in shared batches.

A reply adds tokens as the backend yields them; the writer turns each reply's pending tokens
into one ``message`` event ``{"message_id", "delta", "index"}`` and stores the events of all
replies in one transaction, at most once per ``interval`` (50 ms by default). A token so waits
at most about one interval, and a thousand concurrent replies cost twenty transactions a
second, not tens of thousands. A write that fails is retried with the next batch, in order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from royal.db.availability import warn_retrying
from royal.streams import log

if TYPE_CHECKING:
    from royal.db import Database
    from royal.streams.broker import Broker

logger = logging.getLogger(__name__)

Item = tuple[str, str, Any]


class ReplyDeltas:
    """One reply's text: everything generated so far, and what is not yet in the log."""

    def __init__(self, writer: DeltaWriter, topic: str, message_id: int) -> None:
        self.writer = writer
        self.topic = topic
        self.message_id = message_id
        self.index = 0  # the next event's index: clients detect a gap or a repeat with it
        self.parts: list[str] = []
        self.pending: list[str] = []
        self.unstored = 0  # events handed to the writer and not yet committed

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def tokens(self) -> int:
        return len(self.parts)

    def add(self, delta: str) -> None:
        if delta:
            self.parts.append(delta)
            self.pending.append(delta)
            self.writer.mark(self)

    def take_event(self) -> Item:
        data = {"message_id": self.message_id, "delta": "".join(self.pending), "index": self.index}
        self.index += 1
        self.pending.clear()
        self.unstored += 1
        return self.topic, "message", data

    async def flush(self) -> None:
        """Return once every delta added so far is stored (before the reply's final event)."""
        await self.writer.flush(self)


class DeltaWriter:
    def __init__(self, db: Database, broker: Broker, interval: float) -> None:
        self.db = db
        self.broker = broker
        self.interval = interval
        self.events_written = 0
        self.batches_written = 0
        self._dirty: dict[ReplyDeltas, None] = {}  # insertion-ordered set
        self._unwritten: list[tuple[ReplyDeltas, Item]] = []  # a failed batch, retried first
        self._work = asyncio.Event()
        self._written = asyncio.Condition()

    def open(self, topic: str, message_id: int) -> ReplyDeltas:
        return ReplyDeltas(self, topic, message_id)

    def mark(self, deltas: ReplyDeltas) -> None:
        self._dirty[deltas] = None
        self._work.set()

    async def flush(self, deltas: ReplyDeltas) -> None:
        if deltas.pending:
            self.mark(deltas)
        async with self._written:
            await self._written.wait_for(lambda: not deltas.pending and deltas.unstored == 0)

    async def run(self) -> None:
        """Write batches until cancelled."""
        loop = asyncio.get_running_loop()
        last_write = 0.0
        while True:
            await self._work.wait()
            wait = last_write + self.interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # gather more tokens into this batch
            self._work.clear()
            batch = self._unwritten + [(deltas, deltas.take_event()) for deltas in self._dirty]
            self._dirty.clear()
            self._unwritten = []
            last_write = loop.time()
            try:
                await log.append_many(self.db, [item for _, item in batch])
            except Exception:
                warn_retrying(logger, "writing %d reply deltas failed; retrying", len(batch))
                self._unwritten = batch
                self._work.set()
                continue
            self.broker.wake()
            self.events_written += len(batch)
            self.batches_written += 1
            for deltas, _ in batch:
                deltas.unstored -= 1
            async with self._written:
                self._written.notify_all()
