"""Concurrent writers and readers against a running Royal over HTTP, and the check that every
write can be read back: ``test_sqlite_load.py`` runs it small in CI, ``python -m bench soak``
at full scale.

``result = await run_load(url, headers, duration=10, writers=50, readers=200)`` runs closed-loop
clients (each sends its next request when the previous one is answered) until ``duration`` is
over: writers raise alerts (``POST /api/alerts/``), publish stream events
(``POST /streams/alerts``) and ingest events (``POST /events``) in turn; readers list alerts,
events and jobs. ``await unreadable(url, headers, result)`` then names every acknowledged
write that the API does not return.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from royal.streams.sse import SSEParser

CONNECTIONS_PER_CLIENT = 50  # httpx looks through its pool on every request: keep pools small
READS = ("/api/alerts/?limit=20", "/events?limit=20", "/jobs?limit=20")


@dataclass
class LoadResult:
    """Every answer by kind of request, and the writes that were acknowledged."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # (kind, status)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # kind -> seconds
    errors: Counter[str] = field(default_factory=Counter)  # transport errors, by name
    alerts: list[int] = field(default_factory=list)  # ids of the alerts created
    published: list[int] = field(default_factory=list)  # ids of the stream events
    events: list[str] = field(default_factory=list)  # ids of the ingested events
    seconds: float = 0.0

    def record(self, kind: str, status: int, seconds: float) -> None:
        self.statuses[kind, status] += 1
        self.latencies.setdefault(kind, []).append(seconds)

    @property
    def failures(self) -> dict[tuple[str, int], int]:
        """The answers that were not 2xx, by kind and status."""
        return {key: n for key, n in self.statuses.items() if not 200 <= key[1] < 300}

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def summary(self) -> str:
        lines = [f"{self.requests} requests in {self.seconds:.1f} s"]
        for kind, values in sorted(self.latencies.items()):
            ms = sorted(value * 1000 for value in values)
            p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
            lines.append(
                f"  {kind}: n={len(ms)} p50={ms[len(ms) // 2]:.0f} ms p95={p95:.0f} ms "
                f"max={ms[-1]:.0f} ms"
            )
        if self.failures or self.errors:
            lines.append(f"  failures {self.failures}, transport errors {dict(self.errors)}")
        return "\n".join(lines)


def clients(base_url: str, headers: Mapping[str, str], count: int) -> list[httpx.AsyncClient]:
    """Enough clients for ``count`` concurrent requests, CONNECTIONS_PER_CLIENT each."""
    limits = httpx.Limits(
        max_connections=CONNECTIONS_PER_CLIENT, max_keepalive_connections=CONNECTIONS_PER_CLIENT
    )
    return [
        httpx.AsyncClient(base_url=base_url, headers=dict(headers), timeout=30, limits=limits)
        for _ in range(-(-count // CONNECTIONS_PER_CLIENT))
    ]


async def run_load(
    base_url: str,
    headers: Mapping[str, str],
    *,
    duration: float,
    writers: int,
    readers: int,
) -> LoadResult:
    """``writers`` and ``readers`` closed-loop clients for ``duration`` seconds. ``headers``
    must authenticate an operator (who may read too)."""
    result = LoadResult()
    run = uuid.uuid4().hex[:8]
    pool = clients(base_url, headers, writers + readers)
    deadline = time.monotonic() + duration

    async def timed(
        http: httpx.AsyncClient, kind: str, method: str, path: str, body: object
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await http.request(method, path, json=body)
        except httpx.TransportError as error:
            result.errors[type(error).__name__] += 1
            return None
        result.record(kind, response.status_code, time.monotonic() - started)
        return response if response.is_success else None

    async def writer(n: int, http: httpx.AsyncClient) -> None:
        for i in itertools.count():
            if time.monotonic() >= deadline:
                return
            tag = f"{run}-{n}-{i}"
            if i % 3 == 0:
                body = {"event_code": "RWT", "message": f"load {tag}", "severity": "minor"}
                if response := await timed(http, "alert", "POST", "/api/alerts/", body):
                    result.alerts.append(int(response.json()["id"]))
            elif i % 3 == 1:
                body = {"event": "load", "data": {"tag": tag}}
                if response := await timed(http, "publish", "POST", "/streams/alerts", body):
                    result.published.append(int(response.json()["id"]))
            else:
                body = {"id": f"load-{tag}", "type": "load.note", "source": "load", "data": {}}
                if response := await timed(http, "event", "POST", "/events", body):
                    result.events.append(str(response.json()["id"]))

    async def reader(n: int, http: httpx.AsyncClient) -> None:
        for i in itertools.count(n):
            if time.monotonic() >= deadline:
                return
            await timed(http, "read", "GET", READS[i % len(READS)], None)

    started = time.monotonic()
    try:
        tasks = [writer(n, pool[n % len(pool)]) for n in range(writers)]
        tasks += [reader(n, pool[(writers + n) % len(pool)]) for n in range(readers)]
        await asyncio.gather(*tasks)
    finally:
        result.seconds = time.monotonic() - started
        for http in pool:
            await http.aclose()
    return result


async def unreadable(
    base_url: str, headers: Mapping[str, str], result: LoadResult
) -> dict[str, list[object]]:
    """The acknowledged writes the API does not return (empty lists when all are there):
    alerts from ``GET /api/alerts/?state=all``, events from ``GET /events``, both paged, and
    stream events replayed over SSE from before the first one."""
    async with httpx.AsyncClient(base_url=base_url, headers=dict(headers), timeout=30) as http:
        alerts = await _paged(http, "/api/alerts/?state=all", "id")
        events = await _paged(http, "/events", "id")
        published = await _replayed(http, result.published)
    return {
        "alerts": sorted(set(result.alerts) - alerts),
        "events": sorted(set(result.events) - events),
        "published": sorted(set(result.published) - published),
    }


async def _paged(http: httpx.AsyncClient, path: str, key: str) -> set[object]:
    found: set[object] = set()
    cursor = None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        response = await http.get(path, params=params)
        response.raise_for_status()
        page = response.json()
        found.update(item[key] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def _replayed(http: httpx.AsyncClient, ids: list[int], timeout: float = 30) -> set[int]:
    """The ids among ``ids`` that an SSE replay of ``alerts`` delivers (it reads until it has
    passed the largest one)."""
    if not ids:
        return set()
    found: set[int] = set()
    parser = SSEParser()
    headers = {"Accept": "text/event-stream", "Last-Event-ID": str(min(ids) - 1)}
    async with (
        asyncio.timeout(timeout),
        http.stream("GET", "/streams/alerts", headers=headers) as response,
    ):
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            for event in parser.feed(chunk):
                if event.id is None:
                    continue
                found.add(int(event.id))
                if int(event.id) >= max(ids):
                    return found & set(ids)
    return found & set(ids)
