"""The durable event log against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import random
import re

import asyncpg
import orjson
import pytest

from royal.db import Database, connect_database, migrate
from royal.json_provider import dumps_bytes
from royal.streams import log, retention

ISO_UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_append_returns_the_stored_row_with_increasing_ids(database: Database) -> None:
    first = await log.append(database, "rooms", "room.created", {"id": 1})
    second = await log.append(database, "alerts", "alert.raised", {"code": "EAN"})
    assert first.id >= 1 and second.id == first.id + 1
    assert (first.topic, first.event, first.data) == ("rooms", "room.created", '{"id":1}')
    for event in (first, second):
        assert ISO_UTC_MS.match(event.created_at), event.created_at
    assert await log.read_since(database, 0) == [first, second]


async def test_data_is_serialised_once_and_returned_as_the_same_text(database: Database) -> None:
    value = {"b": 1, "a": [1.5, "é ✓", None], "nested": {"z": True}}
    stored = await log.append(database, "t", "e", value)
    assert stored.data == dumps_bytes(value).decode()
    assert await database.fetch_val("SELECT data FROM stream_events") == stored.data
    [read] = await log.read_since(database, 0)
    assert read.data == stored.data and orjson.loads(read.data) == value


async def test_read_since_filters_by_id_topic_and_limit(database: Database) -> None:
    topics = ["a", "b", "c"] * 4
    stored = await log.append_many(database, [(t, "tick", n) for n, t in enumerate(topics)])
    assert [e.id for e in stored] == list(range(stored[0].id, stored[0].id + 12))
    assert await log.read_since(database, 0) == stored
    assert await log.read_since(database, stored[5].id) == stored[6:]
    assert await log.read_since(database, 0, limit=4) == stored[:4]
    assert await log.read_since(database, stored[-1].id) == []
    only_a = await log.read_since(database, 0, topics=["a"])
    assert [e.data for e in only_a] == ["0", "3", "6", "9"]
    a_and_c = await log.read_since(database, stored[3].id, topics={"a", "c"}, limit=3)
    assert [e.data for e in a_and_c] == ["5", "6", "8"]
    assert await log.read_since(database, 0, topics=[]) == []
    assert await log.read_since(database, 0, topics=["missing"]) == []
    with pytest.raises(ValueError):
        await log.read_since(database, 0, limit=0)


async def test_append_many_in_batches_keeps_the_order(database: Database) -> None:
    stored = await log.append_many(database, [("t", "e", n) for n in range(1200)])
    assert [e.data for e in stored] == [str(n) for n in range(1200)]
    assert [e.id for e in stored] == sorted(e.id for e in stored)
    assert len(await log.read_since(database, 0, limit=5000)) == 1200
    assert await log.append_many(database, []) == []


async def test_append_commits_with_the_callers_transaction(database: Database) -> None:
    async with database.transaction():
        await database.execute("INSERT INTO settings (key, value) VALUES ('k', '1')")
        stored = await log.append(database, "settings", "setting.changed", {"key": "k"})
    assert await log.read_since(database, 0) == [stored]
    assert await database.fetch_val("SELECT count(*) FROM settings") == 1


async def test_an_append_in_a_rolled_back_transaction_leaves_no_event(database: Database) -> None:
    with pytest.raises(RuntimeError, match="abort"):
        async with database.transaction():
            await database.execute("INSERT INTO settings (key, value) VALUES ('k', '1')")
            await log.append(database, "settings", "setting.changed", {"key": "k"})
            raise RuntimeError("abort")
    assert await log.read_since(database, 0) == []
    assert await database.fetch_val("SELECT count(*) FROM settings") == 0
    assert await log.latest_id(database) == 0 and await log.oldest_id(database) is None


async def test_retention_deletes_old_events_and_ids_are_never_reused(database: Database) -> None:
    assert await log.latest_id(database) == 0 and await log.oldest_id(database) is None
    stored = await log.append_many(database, [("t", "e", n) for n in range(5)])
    if database.dialect == "postgres":
        backdate = (
            "UPDATE stream_events SET created_at = now() - interval '2 hours' WHERE id <= :id"
        )
    else:
        backdate = (
            "UPDATE stream_events SET created_at = '2000-01-01T00:00:00.000Z' WHERE id <= :id"
        )
    await database.execute(backdate, {"id": stored[1].id})
    assert await retention.apply_retention(database, 3600) == 2
    assert await retention.deleted_through(database) == stored[1].id
    assert await retention.apply_retention(database, 3600) == 0
    assert await log.oldest_id(database) == stored[2].id
    assert await log.latest_id(database) == stored[-1].id
    assert await log.read_since(database, 0) == stored[2:]
    assert await retention.apply_retention(database, -60) == 3  # a cutoff in the future: all
    assert await retention.deleted_through(database) == stored[-1].id
    assert await log.latest_id(database) == 0 and await log.oldest_id(database) is None
    after = await log.append(database, "t", "e", "again")
    assert after.id > stored[-1].id


@pytest.mark.postgres
async def test_postgres_notifies_the_new_id_at_commit(postgres_url: str) -> None:
    database = connect_database(postgres_url)
    listener = await asyncpg.connect(postgres_url)
    payloads: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(log.NOTIFY_CHANNEL, lambda *args: payloads.put_nowait(args[3]))
        async with database:
            await migrate(database)
            async with database.transaction():
                stored = await log.append(database, "t", "e", 1)
                await asyncio.sleep(0.05)
                assert payloads.empty()  # nothing is announced before the commit
            assert await asyncio.wait_for(payloads.get(), 2) == str(stored.id)
            many = await log.append_many(database, [("t", "e", n) for n in range(3)])
            assert await asyncio.wait_for(payloads.get(), 2) == str(many[-1].id)
            with pytest.raises(RuntimeError):
                async with database.transaction():
                    await log.append(database, "t", "e", 2)
                    raise RuntimeError("abort")
            await asyncio.sleep(0.05)
            assert payloads.empty()
    finally:
        await listener.close()


# The ordering proof: ids must become visible in id order, or a reader following its cursor
# skips an event for good. 32 producers, each in its own transaction on its own connection,
# hold their transaction open for a random moment after appending, so commits race.
PRODUCERS = 32
ROUNDS = 10
# 0-3 ms, not 0-20 ms: the lock serialises the holds, and 320 x 10 ms would take over 3 s.
MAX_HOLD_SECONDS = 0.003


async def produce(database: Database, producer: int, *, locked: bool) -> None:
    rng = random.Random(producer)
    for n in range(ROUNDS):
        async with database.transaction():
            if locked:
                await log.append(database, "order", "tick", {"producer": producer, "n": n})
            else:  # what append would be without the advisory lock
                await database.execute(
                    """INSERT INTO stream_events (topic, event, data)
                            VALUES ('order', 'tick', :data)""",
                    {"data": f'{{"producer": {producer}, "n": {n}}}'},
                )
            await asyncio.sleep(rng.uniform(0, MAX_HOLD_SECONDS))


async def follow(database: Database, producers: asyncio.Future[list[None]]) -> list[list[int]]:
    """Poll read_since(last seen id) like a dispatcher; returns every batch of ids it got."""
    batches: list[list[int]] = []
    last = 0
    while True:
        finished = producers.done()
        batch = [event.id for event in await log.read_since(database, last)]
        if batch:
            batches.append(batch)
            last = batch[-1]
        elif finished:
            return batches
        await asyncio.sleep(0.001)


async def race(database: Database, *, locked: bool) -> list[list[int]]:
    producers = asyncio.gather(*(produce(database, p, locked=locked) for p in range(PRODUCERS)))
    batches = await asyncio.wait_for(follow(database, producers), 10)
    await producers
    return batches


@pytest.mark.postgres
async def test_postgres_ids_become_visible_in_order_under_concurrent_producers(
    postgres_url: str,
) -> None:
    database = connect_database(postgres_url, DATABASE_POOL_SIZE=40)
    async with database:
        await migrate(database)
        batches = await race(database, locked=True)
    seen = [event_id for batch in batches for event_id in batch]
    # Consecutive from 1: no id was ever skipped, and none showed up after a higher one.
    assert seen == list(range(1, PRODUCERS * ROUNDS + 1))
    assert len(batches) > 10  # the reader really was interleaved with the producers


@pytest.mark.postgres
async def test_without_the_lock_a_reader_skips_events(postgres_url: str) -> None:
    """The control: the same race without the advisory lock does lose events for a reader."""
    database = connect_database(postgres_url, DATABASE_POOL_SIZE=40)
    async with database:
        await migrate(database)
        for _ in range(3):
            await database.execute("DELETE FROM stream_events")
            first = await log.latest_id(database) + 1
            batches = await race(database, locked=False)
            stored = [e.id for e in await log.read_since(database, 0, limit=10_000)]
            seen = [event_id for batch in batches for event_id in batch]
            if seen != stored:
                break
        else:
            pytest.fail("three unlocked races never made a reader skip an event")
    assert stored[0] >= first and len(stored) == PRODUCERS * ROUNDS
    assert set(seen) < set(stored)  # events committed after a higher id was read: lost
