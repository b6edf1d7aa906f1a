"""Events cross processes: several Hypercorn workers, and several servers sharing one database.

On PostgreSQL the dispatchers are woken by LISTEN/NOTIFY (and survive a killed listener); on
SQLite they find other processes' events by polling the table. Every subscriber must get every
event, in order, whichever process it is connected to and whichever one took the publish.
Run with ``-s`` to see the measured latencies and which worker pids served.

The PostgreSQL fixtures come before ``live_royal`` in each signature: fixtures are torn down in
reverse, so the servers stop before their throwaway database is dropped under them.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from urllib.parse import urlsplit

import asyncpg
import pytest

from royal.config import Config
from royal.testing import SSEClient
from tests.conftest import LiveRoyal
from tests.fanout import (
    TOPIC,
    Publisher,
    Subscriber,
    assert_all_in_order,
    cancel,
    eventually,
    latencies,
    publisher,
    sse_subscriber,
    summary,
    wait_for_all,
    warm_up,
    worker_stats,
    ws_subscriber,
)

LiveRoyalFactory = Callable[..., Awaitable[LiveRoyal]]


@pytest.fixture(
    name="backend",
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
)
def _backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """The backend's name and its database URL (None: the test's SQLite file)."""
    if request.param == "postgres":
        return request.param, request.getfixturevalue("postgres_url")
    return request.param, None


async def test_two_workers_every_subscriber_gets_every_event_in_order(
    backend: tuple[str, str | None], live_royal: LiveRoyalFactory
) -> None:
    count, workers = 100, 2
    name, database_url = backend
    live = await live_royal(workers=workers, database_url=database_url)
    async with AsyncExitStack() as stack:
        events = await stack.enter_async_context(publisher())
        subscribers = [await sse_subscriber(stack, live, f"sse{n}", count) for n in range(8)]
        await warm_up(subscribers, events, [live])
        for n in range(count):
            await events.publish(live, {"n": n})
        await wait_for_all(subscribers, timeout=10)
    assert_all_in_order(subscribers, events, count)
    summary(f"{name}, 2 workers, 8 SSE x {count}", latencies(subscribers, events, cross=False))
    summary(f"{name}, 2 workers, POST on a new connection", events.post_seconds())

    by_pid = await worker_stats(live, workers)
    served = {
        pid: {key: stats["counters"][key] for key in ("sse_open", "published", "dispatched")}
        for pid, stats in by_pid.items()
    }
    print(f"{name}: worker pids (GET /streams on new connections): {served}")
    assert len(by_pid) == workers, f"only {list(by_pid)} answered"
    for pid, stats in by_pid.items():  # each worker dispatched all, whoever took the POST
        assert stats["counters"]["dispatched"] >= count, (pid, stats["counters"])
    assert sum(stats["counters"]["published"] for stats in by_pid.values()) == len(events.sent)
    assert sum(stats["counters"]["sse_open"] for stats in by_pid.values()) == 0
    if name == "postgres":
        assert all(stats["listener"]["connected"] for stats in by_pid.values())
    else:
        assert all(stats["listener"] is None for stats in by_pid.values())


async def across_two_servers(
    a: LiveRoyal, b: LiveRoyal, count: int
) -> tuple[Publisher, list[Subscriber]]:
    """SSE and WebSocket subscribers on both servers; the first half is published on B, the
    rest on A, so a subscriber's server learns of the other half from the database alone."""
    async with AsyncExitStack() as stack:
        events = await stack.enter_async_context(publisher())
        subscribers = [
            await sse_subscriber(stack, a, "A-sse", count),
            await ws_subscriber(stack, a, "A-ws", count),
            await sse_subscriber(stack, b, "B-sse", count),
            await ws_subscriber(stack, b, "B-ws", count),
        ]
        await warm_up(subscribers, events, [a, b])
        for n in range(count):
            await events.publish(b if n < count // 2 else a, {"n": n})
        await wait_for_all(subscribers, timeout=10)
    assert_all_in_order(subscribers, events, count)
    return events, subscribers


@pytest.mark.postgres
async def test_two_servers_on_postgres_deliver_through_notify(
    postgres_url: str, live_royal: LiveRoyalFactory
) -> None:
    a = await live_royal(database_url=postgres_url)
    b = await live_royal(database_url=postgres_url)
    events, subscribers = await across_two_servers(a, b, 100)
    cross = latencies(subscribers, events, cross=True)
    assert len(cross) == 4 * 50
    summary("postgres, 2 servers, publish on one -> subscriber on the other (NOTIFY)", cross)
    summary(
        "postgres, 2 servers, the same, counted from the 201",
        latencies(subscribers, events, cross=True, since_201=True),
    )
    summary("postgres, 2 servers, all deliveries", latencies(subscribers, events, cross=False))
    summary("postgres, 2 servers, POST on a new connection", events.post_seconds())
    # The fallback poll is 5 s: anything near it would mean NOTIFY did not wake the dispatcher.
    assert statistics.median(cross) < 0.1
    assert max(cross) < 1.0
    for server in (a, b):
        stats = await server.stats()
        assert stats["listener"]["connected"] and stats["listener"]["reconnects"] == 0


@pytest.mark.postgres
async def test_a_killed_listen_connection_loses_nothing(
    postgres_server: str, postgres_url: str, live_royal: LiveRoyalFactory
) -> None:
    count, kills = 300, 3
    a = await live_royal(database_url=postgres_url)
    b = await live_royal(database_url=postgres_url)
    database = urlsplit(postgres_url).path.lstrip("/")

    async def listener_of_a_connected() -> bool:
        return bool((await a.stats())["listener"]["connected"])

    async with AsyncExitStack() as stack:
        events = await stack.enter_async_context(publisher(fresh_connections=False))
        subscribers = [
            await sse_subscriber(stack, a, "A-sse", count),
            await ws_subscriber(stack, a, "A-ws", count),
        ]
        await warm_up(subscribers, events, [b])

        async def publish_on_b() -> None:
            started = time.monotonic()
            for n in range(count):  # at most 100 events a second: 3 s or more
                await events.publish(b, {"n": n})
                await asyncio.sleep(max(0.0, started + (n + 1) * 0.01 - time.monotonic()))

        publishing = asyncio.create_task(publish_on_b())
        stack.push_async_callback(cancel, publishing)
        admin = await asyncpg.connect(postgres_server)
        stack.push_async_callback(admin.close)
        killed = []
        for _ in range(kills):
            await asyncio.sleep(0.6)
            await eventually(listener_of_a_connected, timeout=5)
            # Both servers' listeners die (they share the database): only A's matters here.
            rows = await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'royal-listener' AND datname = $1",
                database,
            )
            killed.append((len(events.published), sum(1 for row in rows if row[0])))
        await asyncio.wait_for(publishing, 15)
        await wait_for_all(subscribers, timeout=10)
    print(f"\nkills (events published by then, listeners terminated): {killed}")
    assert [terminated for _, terminated in killed] == [2] * kills
    assert all(0 < published < count for published, _ in killed)  # mid-stream
    assert_all_in_order(subscribers, events, count)
    summary("postgres, A's listener killed 3x, B -> A", latencies(subscribers, events, cross=True))
    await eventually(listener_of_a_connected, timeout=5)
    listener = (await a.stats())["listener"]
    print(f"A's listener afterwards: {listener}")
    assert listener["reconnects"] >= kills
    assert listener["last_error"]


async def test_two_servers_on_one_sqlite_file_deliver_by_polling(
    live_royal: LiveRoyalFactory,
) -> None:
    a = await live_royal()
    b = await live_royal(database_url=a.database_url)
    events, subscribers = await across_two_servers(a, b, 100)
    cross = latencies(subscribers, events, cross=True)
    assert len(cross) == 4 * 50
    poll = Config.STREAM_POLL_SECONDS
    summary(f"sqlite, 2 servers, publish on one -> subscriber on the other (poll {poll} s)", cross)
    summary(
        "sqlite, 2 servers, the same, counted from the 201",
        latencies(subscribers, events, cross=True, since_201=True),
    )
    summary("sqlite, 2 servers, all deliveries", latencies(subscribers, events, cross=False))
    summary("sqlite, 2 servers, POST on a new connection", events.post_seconds())
    assert (await a.stats())["listener"] is None
    assert statistics.median(cross) < 2 * poll
    assert max(cross) < poll + 1.0


async def test_the_sseclient_helper_survives_a_read_timeout(live_royal: LiveRoyalFactory) -> None:
    live = await live_royal()
    async with SSEClient(f"{live.url}/streams/{TOPIC}", token=live.tokens["viewer"]) as stream:
        with pytest.raises(TimeoutError):
            await stream.read(1, timeout=0.3)
        event_id = await live.publish(TOPIC, {"after": "timeout"})
        (event,) = await stream.read(1, timeout=5)  # the stream is still usable
    assert event.id == str(event_id)
