"""Publishers and subscribers over real sockets, shared by the fan-out and reliability tests.

A ``Publisher`` POSTs numbered ``tick`` events and remembers their ids; each ``Subscriber``
(SSE or WebSocket) collects what arrives in a task; ``assert_all_in_order`` is the 0 lost,
0 duplicated, in-order check.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from royal.testing import SSEClient, WSClient
from tests.conftest import LiveRoyal

TOPIC = "alerts"
TICK = "tick"  # the events under test; "warmup" events before them prove subscribers are live


@dataclass
class Sent:
    server: LiveRoyal
    started: float  # time.monotonic() before the POST
    finished: float  # ... and when its 201 arrived (the event was committed by then)


class Publisher:
    """POSTs events as an operator. With ``fresh_connections`` every request opens a new TCP
    connection (``Connection: close``), so with several workers the kernel picks the worker
    each time; otherwise one kept-alive connection per server (faster)."""

    def __init__(self, *, fresh_connections: bool = True) -> None:
        self.sent: dict[int, Sent] = {}
        self.published: list[int] = []  # the tick ids, in publish order
        self._http = httpx.AsyncClient(timeout=10)
        self._connection = "close" if fresh_connections else "keep-alive"

    async def publish(self, live: LiveRoyal, data: Any, event: str = TICK) -> int:
        started = time.monotonic()
        response = await self._http.post(
            f"{live.url}/streams/{TOPIC}",
            json={"event": event, "data": data},
            headers={**live.headers("operator"), "Connection": self._connection},
        )
        assert response.status_code == 201, response.text
        event_id = int(response.json()["id"])
        self.sent[event_id] = Sent(live, started, time.monotonic())
        if event == TICK:
            self.published.append(event_id)
        return event_id

    def post_seconds(self) -> list[float]:
        return [sent.finished - sent.started for sent in self.sent.values()]

    async def close(self) -> None:
        await self._http.aclose()


@asynccontextmanager
async def publisher(*, fresh_connections: bool = True) -> AsyncIterator[Publisher]:
    result = Publisher(fresh_connections=fresh_connections)
    try:
        yield result
    finally:
        await result.close()


@dataclass
class Subscriber:
    """One SSE or WebSocket subscriber collecting events (with arrival times) in a task."""

    name: str
    server: LiveRoyal
    arrivals: list[tuple[float, int, str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def ticks(self) -> list[tuple[float, int, str, Any]]:
        return [arrival for arrival in self.arrivals if arrival[2] == TICK]


async def sse_subscriber(
    stack: AsyncExitStack, live: LiveRoyal, name: str, count: int
) -> Subscriber:
    stream = await stack.enter_async_context(
        SSEClient(f"{live.url}/streams/{TOPIC}", token=live.tokens["viewer"], timeout=30)
    )
    subscriber = Subscriber(name, live)

    async def collect() -> None:
        while len(subscriber.ticks) < count:
            (event,) = await stream.read(1, timeout=30)
            assert event.id is not None
            subscriber.arrivals.append(
                (time.monotonic(), int(event.id), event.event, json.loads(event.data))
            )

    subscriber.task = asyncio.create_task(collect())
    stack.push_async_callback(cancel, subscriber.task)
    return subscriber


async def ws_subscriber(
    stack: AsyncExitStack, live: LiveRoyal, name: str, count: int
) -> Subscriber:
    client = await stack.enter_async_context(WSClient(live.ws_url, token=live.tokens["viewer"]))
    assert await client.subscribe([TOPIC]) == {"type": "subscribed", "topics": [TOPIC]}
    subscriber = Subscriber(name, live)

    async def collect() -> None:
        while len(subscriber.ticks) < count:
            message = await client.receive(30)
            if message["type"] == "heartbeat":  # sent on an idle socket
                continue
            assert message["type"] == "event", message
            subscriber.arrivals.append(
                (time.monotonic(), message["id"], message["event"], message["data"])
            )

    subscriber.task = asyncio.create_task(collect())
    stack.push_async_callback(cancel, subscriber.task)
    return subscriber


async def cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def warm_up(
    subscribers: list[Subscriber], events: Publisher, servers: list[LiveRoyal]
) -> None:
    """Publish warm-up events until every subscriber got one: from then on all are live."""
    deadline = time.monotonic() + 10
    turn = 0
    while not all(subscriber.arrivals for subscriber in subscribers):
        assert time.monotonic() < deadline, {s.name: len(s.arrivals) for s in subscribers}
        await events.publish(servers[turn % len(servers)], {"warmup": turn}, event="warmup")
        turn += 1
        await asyncio.sleep(0.05)
    for subscriber in subscribers:  # a failed collector would otherwise look like a slow one
        assert subscriber.task is not None and not subscriber.task.done()


async def wait_for_all(subscribers: list[Subscriber], timeout: float) -> None:
    tasks = [subscriber.task for subscriber in subscribers if subscriber.task is not None]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    except TimeoutError:
        counts = {s.name: len(s.ticks) for s in subscribers}
        pytest.fail(f"not every subscriber got every event within {timeout} s: {counts}")


def assert_all_in_order(subscribers: list[Subscriber], events: Publisher, count: int) -> None:
    """Every subscriber got exactly the published ticks, in publish order, nothing twice."""
    assert len(events.published) == count
    assert events.published == sorted(events.published)
    for subscriber in subscribers:
        ticks = subscriber.ticks
        assert [tick[1] for tick in ticks] == events.published, subscriber.name
        assert [tick[3]["n"] for tick in ticks] == list(range(count)), subscriber.name
        ids = [arrival[1] for arrival in subscriber.arrivals]
        assert ids == sorted(set(ids)), f"{subscriber.name}: out of order or duplicated"


def latencies(
    subscribers: list[Subscriber], events: Publisher, *, cross: bool, since_201: bool = False
) -> list[float]:
    """Seconds from the start of each publish request (``since_201``: from its response) to
    the arrival at each subscriber (``cross``: only on another server than the publish)."""
    result = []
    for subscriber in subscribers:
        for arrived, event_id, _, _ in subscriber.ticks:
            sent = events.sent[event_id]
            if not cross or sent.server is not subscriber.server:
                result.append(arrived - (sent.finished if since_201 else sent.started))
    return result


def summary(label: str, values: list[float]) -> str:
    ms = sorted(value * 1000 for value in values)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    line = (
        f"{label}: n={len(ms)} p50={statistics.median(ms):.1f} ms "
        f"p95={p95:.1f} ms max={ms[-1]:.1f} ms"
    )
    print(f"\n{line}")
    return line


async def worker_stats(live: LiveRoyal, workers: int, tries: int = 60) -> dict[int, Any]:
    """GET /streams on new connections until every worker answered: stats by worker pid."""
    by_pid: dict[int, Any] = {}
    for _ in range(tries):
        stats = await live.stats()
        by_pid[stats["worker_pid"]] = stats
        if len(by_pid) == workers:
            break
    return by_pid


def ended(subscribers: list[Subscriber]) -> str:
    """Which collectors stopped, and why: a failed one explains a missing event."""
    done = {
        s.name: repr(s.task.exception() if not s.task.cancelled() else "cancelled")
        for s in subscribers
        if s.task is not None and s.task.done()
    }
    return f"collectors ended: {done}" if done else "every collector still running"


async def eventually(
    check: Callable[[], Awaitable[bool]],
    timeout: float,
    interval: float = 0.05,
    explain: Callable[[], str] | None = None,
) -> None:
    """Wait until ``check()`` holds; ``explain()`` says what was still wrong at the deadline."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            detail = f": {explain()}" if explain is not None else ""
            pytest.fail(f"condition not met within {timeout} s{detail}")
        await asyncio.sleep(interval)
