"""The body of an SSE response: replay, live events, heartbeats, and a clean ending.

Framework-free: the blueprint hands it to Quart as a streaming body. Cancellation (the client
went away) lands in the ``async with`` blocks, so the subscription is freed at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractContextManager, asynccontextmanager

from royal.streams import sse
from royal.streams.broker import Broker, Subscription

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


async def event_stream(
    broker: Broker,
    topics: list[str],
    last_event_id: int | None,
    *,
    heartbeat_seconds: float,
    retry_ms: int,
    watch: Watch,
    stop_after: Collection[str] = (),
) -> AsyncIterator[bytes]:
    """Frames for one client: ``retry:``, then events (backlogs joined into one write).

    ``watch(on_revoked)`` ties the stream to its credentials: when they are revoked the stream
    ends with a ``revoked`` event. On shutdown it ends with a short retry hint, so clients
    reconnect (to another worker) with their Last-Event-ID. The stream also ends after the first
    event named in ``stop_after`` (the end of an agent reply).
    """
    async with streaming(broker, topics, last_event_id) as subscription:
        with watch(lambda: subscription.close("revoked")):
            yield sse.retry(retry_ms)
            while (batch := await subscription.next_batch(heartbeat_seconds)) is not None:
                if batch:
                    last = next((n for n, e in enumerate(batch) if e.event in stop_after), None)
                    if last is not None:
                        batch = batch[: last + 1]
                    broker.counters.delivered += len(batch)
                    yield b"".join(event.sse for event in batch)
                    if last is not None:
                        return
                else:
                    yield sse.comment("ping")
            if subscription.closed == "revoked":
                yield sse.encode('{"reason": "revoked"}', event="revoked")
            else:
                yield sse.retry(min(retry_ms, 1000)) + sse.comment(subscription.closed or "")
