"""Write a subscription's live events from the dispatcher, not from a task per subscriber.

When the dispatcher hands an event to a subscription, ``LiveWriter`` writes it once the
dispatch pass is over (every event of the pass in one go), calling the connection's send in
the dispatcher's own task through ``eager.start``: a send to a socket with room finishes
there, with no task woken per subscriber. A send that must wait (a slow reader) finishes in a
task of its own; the subscriber's events meanwhile gather in its buffer and go out together
when it is done, and past the buffer's size the subscription catches up from the log instead.

The consumer's own task still does what needs awaiting (replay and catch-up from the log,
heartbeats, the ending) and writes through ``write`` so that its frames and the eager ones
stay in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from royal.streams import eager
from royal.streams.broker import Subscription
from royal.streams.event import Event

logger = logging.getLogger(__name__)

Send = Coroutine[Any, Any, None]


class LiveWriter:
    def __init__(self, subscription: Subscription, send_batch: Callable[[list[Event]], Send]):
        """``send_batch(events)`` is called synchronously when a batch is taken and returns
        the coroutine that sends it."""
        self.subscription = subscription
        self.send_batch = send_batch
        self.last_write = time.monotonic()  # when a write last started (heartbeats follow it)
        self._in_flight: asyncio.Future[None] | None = None  # an eager send still waiting
        self._reserved = False  # the consumer's task is writing: no eager sends meanwhile
        self._scheduled = False
        self._stopped = False

    def start(self) -> None:
        self.subscription.listener = self._schedule

    def stop(self) -> None:
        """No more eager sends: the connection is being closed (a flush scheduled before
        would otherwise send on a closed socket)."""
        self._stopped = True
        self.subscription.listener = None
        if self._in_flight is not None:
            self._in_flight.cancel()

    async def write(self, send: Callable[[], Send]) -> None:
        """Send from the consumer's task, after any eager send still under way."""
        self._reserved = True
        try:
            await self.settle()
            self.last_write = time.monotonic()
            await send()
        finally:
            self._reserved = False
        self._schedule()  # what arrived meanwhile

    async def settle(self) -> None:
        """Until no eager send is under way."""
        while self._in_flight is not None:
            await asyncio.shield(self._in_flight)

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.subscription.broker.defer(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._stopped or self._reserved or self._in_flight is not None:
            return  # the send under way schedules another flush when it is done
        batch = self.subscription.ready_now()
        if not batch:
            return
        self.last_write = time.monotonic()
        try:
            self._in_flight = eager.start(self.send_batch(batch))
        except Exception:
            logger.warning("a stream write failed; ending the stream", exc_info=True)
            self.subscription.close("error")
            return
        if self._in_flight is not None:
            self._in_flight.add_done_callback(self._sent)

    def _sent(self, done: asyncio.Future[None]) -> None:
        self._in_flight = None
        if done.cancelled():
            return
        if done.exception() is not None:
            logger.warning("a stream write failed; ending the stream", exc_info=done.exception())
            self.subscription.close("error")
            return
        self._schedule()  # the backlog gathered meanwhile, in one go
