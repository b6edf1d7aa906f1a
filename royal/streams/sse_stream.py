"""The body of an SSE response: replay, live events, heartbeats, and a clean ending.

Framework-free: the blueprint hands it to Quart as a streaming body. Cancellation (the client
went away) lands in the ``async with`` blocks, so the subscription is freed at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractContextManager

from royal.streams import sse
from royal.streams.broker import Broker

Watch = Callable[[Callable[[], None]], AbstractContextManager[object]]


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
    broker.counters.sse_open += 1
    try:
        async with broker.subscribe(topics, last_event_id) as subscription:
            with watch(lambda: subscription.close("revoked")), broker.topics.reading(topics):
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
    finally:
        broker.counters.sse_open -= 1
