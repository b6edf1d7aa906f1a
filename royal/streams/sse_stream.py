"""The body of an SSE response: replay, live events, heartbeats, and a clean ending.

Framework-free: it writes through the ``write`` it is given (the ASGI send, wrapped by the
app). Cancellation (the client went away) lands in the ``async with`` blocks, so the
subscription is freed at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

from royal.streams import eager, sse
from royal.streams.broker import Broker, Subscription
from royal.streams.event import Event

logger = logging.getLogger(__name__)

Watch = Callable[[Callable[[], None]], AbstractContextManager[object]]


@asynccontextmanager
async def streaming(
    broker: Broker, topics: list[str], last_event_id: int | None
) -> AsyncIterator[Subscription]:
    """A subscription for one streamed response: counted as an open stream (the drain waits
    for it) and holding its topics' presence (agent sessions) while it lasts."""
    broker.counters.sse_open += 1
    try:
        async with broker.subscribe(topics, last_event_id) as subscription:
            with broker.topics.reading(topics):
                yield subscription
    finally:
        broker.counters.sse_open -= 1


Write = Callable[[bytes], Coroutine[Any, Any, None]]


class SSEStream:
    """Frames for one client: ``retry:``, then events (backlogs joined into one write).

    ``run(write)`` writes them. Live events are written by the dispatcher itself, through
    ``eager.start``: when an event is dispatched, each stream's ``write`` is called in the
    dispatcher's task and normally finishes there, the socket having room, with no task woken
    per subscriber. A write that has to wait (a slow reader) finishes in a task of its own;
    meanwhile the subscriber's events gather in its buffer and go out joined in one write when
    it is done, and past the buffer's size the subscription catches up from the log instead.
    The stream's own task does the rest: replay and catch-up from the log, heartbeats and the
    ending, and it is the one cancelled when the client goes away.

    ``watch(on_revoked)`` ties the stream to its credentials: when they are revoked the stream
    ends with a ``revoked`` event. On shutdown it ends with a short retry hint, so clients
    reconnect (to another worker) with their Last-Event-ID. The stream also ends after the first
    event named in ``stop_after`` (the end of an agent reply).
    """

    def __init__(
        self,
        broker: Broker,
        topics: list[str],
        last_event_id: int | None,
        *,
        heartbeat_seconds: float,
        retry_ms: int,
        watch: Watch,
        stop_after: Collection[str] = (),
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.last_event_id = last_event_id
        self.heartbeat_seconds = heartbeat_seconds
        self.retry_ms = retry_ms
        self.watch = watch
        self.stop_after = stop_after
        self.writes = 0
        self._write: Write | None = None
        self._subscription: Subscription | None = None
        self._in_flight: asyncio.Future[None] | None = None  # an eager write still waiting
        self._reserved = False  # the stream's task holds frames to write: no eager writes
        self._flush_scheduled = False
        self._finished = False  # the stop_after event went out

    async def run(self, write: Write) -> None:
        self._write = write
        async with streaming(self.broker, self.topics, self.last_event_id) as subscription:
            self._subscription = subscription
            with self.watch(lambda: subscription.close("revoked")):
                try:
                    await self._write_from_task(sse.retry(self.retry_ms))
                    subscription.listener = self._schedule_flush
                    await self._serve(subscription)
                finally:
                    subscription.listener = None
                    if self._in_flight is not None:
                        self._in_flight.cancel()

    async def _serve(self, subscription: Subscription) -> None:
        while not self._finished:
            writes_before = self.writes
            batch = await subscription.next_batch(self.heartbeat_seconds)
            if batch is None:
                break
            if batch:
                frames = self._frames(batch)
                await self._write_from_task(frames)
            elif self.writes == writes_before:
                await self._write_from_task(sse.comment("ping"))
        if self._finished:
            while self._in_flight is not None:  # the stop_after event's write
                await asyncio.shield(self._in_flight)
            return
        if subscription.closed == "revoked":
            await self._write_from_task(sse.encode('{"reason": "revoked"}', event="revoked"))
        else:
            ending = sse.retry(min(self.retry_ms, 1000)) + sse.comment(subscription.closed or "")
            await self._write_from_task(ending)

    def _frames(self, batch: list[Event]) -> bytes:
        """The batch's frames, cut after a ``stop_after`` event (which ends the stream)."""
        if self.stop_after:
            last = next((n for n, e in enumerate(batch) if e.event in self.stop_after), None)
            if last is not None:
                batch = batch[: last + 1]
                self._finished = True
                assert self._subscription is not None
                self._subscription.close("finished")
        self.broker.counters.delivered += len(batch)
        return b"".join(event.sse for event in batch)

    async def _write_from_task(self, frames: bytes) -> None:
        """Write in order after any eager write still under way."""
        assert self._write is not None
        self._reserved = True
        try:
            while self._in_flight is not None:
                await asyncio.shield(self._in_flight)
            self.writes += 1
            await self._write(frames)
        finally:
            self._reserved = False
        self._schedule_flush()  # what arrived meanwhile

    def _schedule_flush(self) -> None:
        """The subscription buffered a live event: write it once this dispatch is over (the
        events of one dispatch pass go out in one write)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        subscription = self._subscription
        if self._reserved or self._in_flight is not None or subscription is None:
            return  # the write under way schedules another flush when it is done
        batch = subscription.ready_now()
        if not batch:
            return
        frames = self._frames(batch)
        assert self._write is not None
        self.writes += 1
        try:
            self._in_flight = eager.start(self._write(frames))
        except Exception:
            logger.warning("an SSE write failed; ending the stream", exc_info=True)
            subscription.close("error")
            return
        if self._in_flight is not None:
            self._in_flight.add_done_callback(self._written)

    def _written(self, done: asyncio.Future[None]) -> None:
        self._in_flight = None
        if done.cancelled():
            return
        if done.exception() is not None and self._subscription is not None:
            logger.warning("an SSE write failed; ending the stream", exc_info=done.exception())
            self._subscription.close("error")
            return
        self._schedule_flush()  # the backlog gathered meanwhile, in one write
