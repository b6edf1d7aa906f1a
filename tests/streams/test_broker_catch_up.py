"""A subscription that fell behind catches up from the log, even when a read of it fails."""

from __future__ import annotations

import orjson
import pytest

from royal.db import Database
from royal.streams import log
from royal.streams.broker import Broker
from royal.streams.event import Event
from royal.streams.topics import Topics

BUFFER = 3


async def publish(broker: Broker, database: Database, n: int) -> None:
    """Append and dispatch at once, as the dispatcher would after reading the log."""
    broker.dispatch(Event.from_stored(await log.append(database, "alerts", "tick", {"n": n})))


async def test_a_failed_catch_up_read_is_retried_from_the_same_place(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = Broker(database, Topics(["alerts"], []), buffer_size=BUFFER, replay_page=100)
    broker.attach_dispatcher(lambda: None, await log.latest_id(database))
    async with broker.subscribe(["alerts"]) as subscription:
        for n in range(BUFFER + 2):  # overflows the buffer: the subscription must read the log
            await publish(broker, database, n)

        real_read_since = log.read_since

        async def unreachable(*args: object, **kwargs: object) -> list[log.StoredEvent]:
            raise ConnectionError("the database went away")

        monkeypatch.setattr(log, "read_since", unreachable)
        with pytest.raises(ConnectionError):
            await subscription.next_batch(timeout=1)
        await publish(broker, database, BUFFER + 2)  # arrives while the log is unreadable

        monkeypatch.setattr(log, "read_since", real_read_since)
        received = []
        while batch := await subscription.next_batch(timeout=0.1):
            received.extend(orjson.loads(event.data)["n"] for event in batch)
    assert received == list(range(BUFFER + 3))
