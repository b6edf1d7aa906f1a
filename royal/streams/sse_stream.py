"""The body of an SSE response: replay, live events, heartbeats, and a clean ending.

Framework-free: it writes through the ``write`` it is given (the ASGI send, wrapped by the
app). Cancellation (the client went away) lands in the ``async with`` blocks, so the
subscription is freed at once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

from royal.streams import sse
from royal.streams.broker import Broker, Subscription
from royal.streams.event import Event
from royal.streams.live_writer import LiveWriter

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

    ``run(write)`` writes them: live events from the dispatcher (``LiveWriter``), the rest
    from the stream's own task, which is the one cancelled when the client goes away.

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
        self._finished = False  # the stop_after event went out

    async def run(self, write: Write) -> None:
        async with streaming(self.broker, self.topics, self.last_event_id) as subscription:
            live = LiveWriter(subscription, lambda batch: write(self._frames(subscription, batch)))
            with self.watch(lambda: subscription.close("revoked")):
                try:
                    await live.write(lambda: write(sse.retry(self.retry_ms)))
                    live.start()
                    await self._serve(subscription, live, write)
                finally:
                    live.stop()

    async def _serve(self, subscription: Subscription, live: LiveWriter, write: Write) -> None:
        while not self._finished:
            # A ping one heartbeat after the last write, whoever wrote it: never two silent
            # heartbeats in a row (a vanished client is found within two: docs/realtime.md).
            quiet = time.monotonic() - live.last_write
            batch = await subscription.next_batch(max(0.0, self.heartbeat_seconds - quiet))
            if batch is None:
                break
            if batch:
                frames = self._frames(subscription, batch)
                await live.write(functools.partial(write, frames))
            elif time.monotonic() - live.last_write >= self.heartbeat_seconds:
                await live.write(lambda: write(sse.comment("ping")))
        if self._finished:
            await live.settle()  # the stop_after event's write
        elif subscription.closed == "revoked":
            revoked = sse.encode('{"reason": "revoked"}', event="revoked")
            await live.write(lambda: write(revoked))
        else:
            ending = sse.retry(min(self.retry_ms, 1000)) + sse.comment(subscription.closed or "")
            await live.write(lambda: write(ending))

    def _frames(self, subscription: Subscription, batch: list[Event]) -> bytes:
        """The batch's frames, cut after a ``stop_after`` event (which ends the stream)."""
        if self.stop_after:
            last = next((n for n, e in enumerate(batch) if e.event in self.stop_after), None)
            if last is not None:
                batch = batch[: last + 1]
                self._finished = True
                subscription.close("finished")
        self.broker.counters.delivered += len(batch)
        return batch[0].sse if len(batch) == 1 else b"".join([event.sse for event in batch])
