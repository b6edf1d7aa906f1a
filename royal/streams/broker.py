"""Pub/sub by topic, per process: bounded subscriber buffers with catch-up from the event log.

Publishing never waits for a subscriber. A durable event is appended to the log and the
dispatcher (one per process) reads it back in id order and hands it to every matching
subscription. A subscription that falls behind drops its buffer and catches up from the log
from the last id it delivered: memory stays bounded and nothing is lost. On an ephemeral topic
(``metrics``) only the newest value is kept, so a slow reader gets the latest, not a backlog.

Resuming is the same catch-up: subscribe first, replay ``id > last_event_id`` from the log,
then go live, dropping anything already delivered by id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from royal.json_provider import dumps_bytes
from royal.streams import log, retention
from royal.streams.event import RESET, Event
from royal.streams.topics import Topics

if TYPE_CHECKING:
    from royal.db import Database

logger = logging.getLogger(__name__)


@dataclass
class StreamCounters:
    """Totals since start, for /metrics (this process only)."""

    sse_open: int = 0
    ws_open: int = 0
    subscriptions: int = 0
    published: int = 0  # stored events published by this process
    published_ephemeral: int = 0  # ephemeral ones (live metrics), never stored
    dispatched: int = 0
    delivered: int = 0
    replayed: int = 0
    catchups: int = 0
    resets: int = 0


class StreamsUnavailable(RuntimeError):
    """The dispatcher has not reached the event log yet (the database is down)."""


class Subscription:
    """One consumer's view of some topics: iterate it for batches of events, in id order."""

    def __init__(
        self,
        broker: Broker,
        topics: Collection[str],
        last_event_id: int | None,
        buffer_size: int,
    ) -> None:
        self.broker = broker
        self.topics = frozenset(topics)
        # Without a resume point, start where the dispatcher is: what it already dispatched was
        # before this subscription, and an overflow must not replay the whole history.
        self.last_id = (broker.cursor or 0) if last_event_id is None else last_event_id
        self.closed: str | None = None  # why it ended: "revoked", "shutdown", ...
        self._resume = last_event_id is not None
        self._catching_up = self._resume
        self._buffer: list[Event] = []  # a list: an empty deque already holds ~760 bytes
        self._buffer_size = buffer_size
        self._latest: dict[str, Event] = {}  # ephemeral topics: newest value wins
        self._waiter: asyncio.Future[bool] | None = None  # next_batch waiting: True on a wake
        self._reading = False  # a catch-up page is being read from the log
        # Called instead of waking the consumer when a live event is buffered: a consumer
        # that writes it at once (SSEStream) takes it with ready_now(), without a task switch.
        self.listener: Callable[[], None] | None = None

    def deliver(self, event: Event) -> None:
        """Called by the broker for every matching event; never blocks, never raises."""
        if event.id is None:
            self._latest[event.topic] = event
        elif self._catching_up:
            return  # the log has it; the catch-up will read it
        elif len(self._buffer) >= self._buffer_size:
            self._buffer.clear()
            self._catching_up = True
            self.broker.counters.catchups += 1
            self._wake()  # reading the log takes the consumer's own task
            return
        else:
            self._buffer.append(event)
        if self.listener is not None:
            self.listener()
        else:
            self._wake()

    def ready_now(self) -> list[Event]:
        """The buffered live events, in order, when they can be taken without waiting: not
        while catching up from the log (the log's page comes first) or after close."""
        if self._catching_up or self._reading or self.closed is not None:
            return []
        return self._drain()

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
            self._wake()

    async def next_batch(self, timeout: float | None = None) -> list[Event] | None:
        """The next events in order; [] when ``timeout`` passed with nothing; None when closed."""
        while True:
            if self.closed is not None:
                return None
            batch = await self._catch_up() if self._catching_up else self._drain()
            if batch:
                return batch
            if self._catching_up:
                continue
            if self._buffer or self._latest or self.closed is not None:
                continue  # arrived while a catch-up page was being read
            if not await self._wait(timeout):
                return []

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def _wait(self, timeout: float | None) -> bool:
        """Until woken (True) or ``timeout`` passed (False). A bare future and a timer: an idle
        stream waits here all its life, and an Event with its deque costs ~850 bytes more."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        timer = None if timeout is None else loop.call_later(timeout, _time_out, waiter)
        try:
            woken: bool = await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        return woken

    def _drain(self) -> list[Event]:
        buffer = self._buffer
        if len(buffer) == 1 and not self._latest:  # the usual live case: one new event
            event = buffer.pop()
            if event.id > self.last_id:  # type: ignore[operator]
                self.last_id = event.id  # type: ignore[assignment]
                return [event]
            return []
        batch = [event for event in buffer if event.id > self.last_id]  # type: ignore[operator]
        buffer.clear()
        if batch:
            self.last_id = batch[-1].id  # type: ignore[assignment]
        batch.extend(self._latest.values())
        self._latest.clear()
        return batch

    async def _catch_up(self) -> list[Event]:
        """Read the next page from the log; leave catch-up mode when it is exhausted.

        Live events arriving meanwhile go to the (cleared) buffer, so when the log has nothing
        newer, the buffer holds everything after it: no gap, and duplicates are dropped by id.
        """
        self._catching_up = False
        self._buffer.clear()
        batch: list[Event] = []
        self._reading = True
        try:
            if self._resume:
                self._resume = False
                batch.extend(await self.broker.reset_if_lost(self))
            rows = await log.read_since(
                self.broker.db, self.last_id, topics=self.topics, limit=self.broker.replay_page
            )
        except BaseException:
            self._catching_up = True  # the buffer was cleared: only the log has those events
            raise
        finally:
            self._reading = False
        if rows:
            self.last_id = rows[-1].id
            self._catching_up = len(rows) == self.broker.replay_page or self._catching_up
            self.broker.counters.replayed += len(rows)
            batch.extend(Event.from_stored(row) for row in rows)
        return batch

    def __aiter__(self) -> AsyncIterator[list[Event]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[Event]]:
        while (batch := await self.next_batch()) is not None:
            yield batch


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class Broker:
    def __init__(
        self,
        db: Database,
        topics: Topics,
        *,
        buffer_size: int = 1000,
        replay_page: int = 500,
    ) -> None:
        self.db = db
        self.topics = topics
        self.buffer_size = buffer_size
        self.replay_page = replay_page
        self.counters = StreamCounters()
        self._by_topic: dict[str, set[Subscription]] = {}
        self._latest: dict[str, Event] = {}  # the newest ephemeral value per topic
        self._wake_dispatcher: Callable[[], None] | None = None
        self._closed = False
        self._on_close: set[Callable[[], None]] = set()
        self.cursor: int | None = None  # the last log id dispatched here; None before start
        self._deferred: list[Callable[[], None]] = []

    @property
    def ready(self) -> bool:
        """Whether the dispatcher has reached the log, so subscriptions can start."""
        return self.cursor is not None

    def attach_dispatcher(self, wake: Callable[[], None], cursor: int) -> None:
        self._wake_dispatcher = wake
        self.cursor = cursor

    async def publish(self, topic: str, event: str, data: Any) -> Event:
        """Publish one event. Durable topics: stored, then delivered by the dispatcher."""
        if topic in self.topics.ephemeral:
            published = Event(topic, event, dumps_bytes(data).decode())
            self.dispatch(published)
            self.counters.published_ephemeral += 1
        else:
            published = Event.from_stored(await log.append(self.db, topic, event, data))
            self.wake()
            self.counters.published += 1
        return published

    def wake(self) -> None:
        """Tell the dispatcher new rows may be in the log (call after appending in your own
        transaction, once it committed)."""
        if self._wake_dispatcher is not None:
            self._wake_dispatcher()

    def defer(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the current dispatch pass is over. Every subscriber woken in
        the pass shares one loop callback: a call_soon each cost ~1 µs per delivery."""
        if not self._deferred:
            asyncio.get_running_loop().call_soon(self._run_deferred)
        self._deferred.append(callback)

    def _run_deferred(self) -> None:
        callbacks, self._deferred = self._deferred, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one stream's bug must not starve the others
                logger.exception("a deferred stream write failed")

    def dispatch(self, event: Event) -> None:
        """Hand one event to every subscription of its topic (the dispatcher calls this)."""
        if event.id is None:
            self._latest[event.topic] = event
        else:
            self.cursor = event.id
        self.counters.dispatched += 1
        for subscription in self._by_topic.get(event.topic, ()):
            subscription.deliver(event)

    @asynccontextmanager
    async def subscribe(
        self, topics: Collection[str], last_event_id: int | None = None
    ) -> AsyncIterator[Subscription]:
        """Subscribe for the life of the block; unsubscribed on exit, even when cancelled."""
        if self.cursor is None:
            raise StreamsUnavailable("The event log is not reachable yet.")
        subscription = Subscription(self, topics, last_event_id, self.buffer_size)
        if self._closed:
            subscription.close("shutdown")
        for topic in subscription.topics:
            self._by_topic.setdefault(topic, set()).add(subscription)
            if topic in self._latest:
                subscription.deliver(self._latest[topic])
        self.counters.subscriptions += 1
        try:
            yield subscription
        finally:
            self.counters.subscriptions -= 1
            for topic in subscription.topics:
                subscribers = self._by_topic.get(topic)
                if subscribers is not None:
                    subscribers.discard(subscription)
                    if not subscribers:
                        del self._by_topic[topic]

    async def reset_if_lost(self, subscription: Subscription) -> list[Event]:
        """A ``reset`` event when the client asked for ids the log no longer (or never) had.

        Retention deleted everything up to a watermark: a resume from below it lost events, so
        the client is told (and should reload its state), then gets what is left. An id beyond
        the newest one comes from another database: the client restarts from the present.
        """
        deleted_through = await retention.deleted_through(self.db)
        latest = await log.latest_id(self.db)
        reason = None
        if subscription.last_id < deleted_through:
            reason, restart_from = "retention", deleted_through
        elif subscription.last_id > latest:
            reason, restart_from = "unknown_id", latest
        if reason is None:
            return []
        self.counters.resets += 1
        data = {
            "reason": reason,
            "last_event_id": subscription.last_id,
            "resume_from": restart_from,
        }
        subscription.last_id = restart_from
        return [Event("", RESET, dumps_bytes(data).decode(), restart_from)]

    @contextmanager
    def on_close(self, callback: Callable[[], None]) -> Iterator[None]:
        """Call ``callback`` if the broker closes while the block runs (a WebSocket with no
        subscription still has to be told the server is going away)."""
        if self._closed:
            callback()
        self._on_close.add(callback)
        try:
            yield
        finally:
            self._on_close.discard(callback)

    def close(self, reason: str = "shutdown") -> None:
        """End every subscription (their streams finish with a retry hint) and refuse new ones."""
        self._closed = True
        for callback in list(self._on_close):
            callback()
        for subscribers in list(self._by_topic.values()):
            for subscription in list(subscribers):
                subscription.close(reason)
