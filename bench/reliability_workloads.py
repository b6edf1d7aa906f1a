"""Load and fault workloads shared by ``tests/reliability`` (small, in CI) and ``bench/soak.py``
(full scale, on demand): the same code at two sizes, so CI guards what the soak measures.

Each takes a server's base URL and credentials and talks to it over real sockets.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from royal.testing import SSEClient

TOPIC = "alerts"
TICK = "tick"


@dataclass
class Outcome:
    kind: str  # "read" or "publish"
    started: float
    finished: float
    status: int
    retry_after: str | None
    body: dict[str, Any]


@dataclass
class RequestLoad:
    """Reads (GET /api/alerts/) and publishes (POST /streams/<topic>) in a loop, remembering
    every answer and the event ids that got a 201; ``run()`` goes on until cancelled."""

    url: str
    headers: Mapping[str, str]
    outcomes: list[Outcome] = field(default_factory=list)
    published: list[int] = field(default_factory=list)

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            n = 0
            while True:
                await self._one(http, "read", "GET", "/api/alerts/", None)
                await self._one(http, "publish", "POST", f"/streams/{TOPIC}", n)
                n += 1
                await asyncio.sleep(0.02)

    async def _one(
        self, http: httpx.AsyncClient, kind: str, method: str, path: str, n: int | None
    ) -> None:
        body = None if n is None else {"event": TICK, "data": {"n": n}}
        started = time.monotonic()
        response = await http.request(method, path, json=body, headers=dict(self.headers))
        self.outcomes.append(
            Outcome(
                kind,
                started,
                time.monotonic(),
                response.status_code,
                response.headers.get("Retry-After"),
                response.json(),
            )
        )
        if response.status_code == 201:
            self.published.append(int(response.json()["id"]))

    def first(self, kind: str, after: float, success: bool) -> Outcome | None:
        """The first answer of ``kind`` to a request started at ``after`` or later that
        succeeded (or failed)."""
        for outcome in self.outcomes:
            if outcome.kind == kind and outcome.started >= after:
                if (outcome.status < 300) == success:
                    return outcome
        return None


async def worker_stats(
    url: str, headers: Mapping[str, str], workers: int, tries: int = 200
) -> dict[int, dict[str, Any]]:
    """``GET /streams`` on new connections until every worker answered: stats by worker pid
    (the kernel spreads new connections over the workers)."""
    by_pid: dict[int, dict[str, Any]] = {}
    for _ in range(tries):
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            stats = (await http.get("/streams", headers=dict(headers))).json()
        by_pid[stats["worker_pid"]] = stats
        if len(by_pid) == workers:
            break
    return by_pid


@dataclass
class StormResult:
    reconnects: int
    published: list[int]
    received: list[list[int]]  # per client, every tick id, in arrival order
    seconds: float

    @property
    def lost(self) -> int:
        wanted = set(self.published)
        return sum(len(wanted - set(ids)) for ids in self.received)

    @property
    def duplicated(self) -> int:
        return sum(len(ids) - len(set(ids)) for ids in self.received)

    @property
    def out_of_order(self) -> int:
        return sum(1 for ids in self.received if ids != sorted(ids))


async def reconnect_storm(
    url: str,
    viewer_token: str,
    operator_headers: Mapping[str, str],
    *,
    clients: int,
    reconnects: int,
    publish_every: float = 0.005,
    progress: Any = None,
) -> StormResult:
    """``clients`` SSE clients each read a few events, hang up and resume with
    Last-Event-ID, ``reconnects`` times in all, while events are published; then each
    resumes once more and reads up to the last one. Every client must end with exactly the
    published ids, in order."""
    received: list[list[int]] = [[] for _ in range(clients)]
    published: list[int] = []
    done = [0]
    started = time.monotonic()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)

    async def publish(http: httpx.AsyncClient) -> None:
        n = 0
        while True:
            response = await http.post(
                f"{url}/streams/{TOPIC}",
                json={"event": TICK, "data": {"n": n}},
                headers=dict(operator_headers),
            )
            response.raise_for_status()
            published.append(int(response.json()["id"]))
            n += 1
            await asyncio.sleep(publish_every)

    async def read(stream: SSEClient, ids: list[int], count: int, timeout: float) -> None:
        for event in await stream.read(count, timeout=timeout):
            if event.event == TICK and event.id is not None:
                ids.append(int(event.id))

    positions: list[str | None] = [None] * clients  # where each client stopped reading

    async def client(index: int, http: httpx.AsyncClient, ready: asyncio.Event) -> None:
        ids = received[index]
        stream = SSEClient(f"{url}/streams/{TOPIC}", token=viewer_token, client=http)
        await stream.open()
        # A first event (the warm-up) proves the subscription is live before ticks flow.
        await stream.read(1, timeout=30)
        ready.set()
        while done[0] < reconnects:
            await read(stream, ids, random.randint(1, 4), timeout=30)
            await stream.resume()  # FIN, then a new connection with Last-Event-ID
            done[0] += 1
            if progress is not None and done[0] % 1000 == 0:
                progress(done[0])
        # Resume from the last event read, not the last one parsed (more may be buffered).
        positions[index] = str(ids[-1]) if ids else stream.last_event_id
        await stream.close()

    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), limits=limits) as http,
        httpx.AsyncClient(timeout=30) as publisher,
    ):
        readies = [asyncio.Event() for _ in range(clients)]
        tasks = [asyncio.create_task(client(i, http, readies[i])) for i in range(clients)]
        try:
            while not all(ready.is_set() for ready in readies):
                await publisher.post(
                    f"{url}/streams/{TOPIC}",
                    json={"event": "warmup", "data": {}},
                    headers=dict(operator_headers),
                )
                await asyncio.sleep(0.1)
            publishing = asyncio.create_task(publish(publisher))
            try:
                await asyncio.gather(*tasks)
            finally:
                publishing.cancel()
                await asyncio.gather(publishing, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Each client comes back once more and reads up to the last published event.
        last = published[-1]

        async def catch_up(index: int) -> None:
            ids = received[index]
            stream = SSEClient(
                f"{url}/streams/{TOPIC}",
                token=viewer_token,
                client=http,
                last_event_id=positions[index],
            )
            async with stream:
                while not ids or ids[-1] < last:
                    await read(stream, ids, 1, timeout=30)

        await asyncio.gather(*(catch_up(index) for index in range(clients)))
    return StormResult(done[0], published, received, time.monotonic() - started)


async def resuming_reader(
    url: str, token: str, ids: list[int], http: httpx.AsyncClient, reconnects: list[int]
) -> None:
    """Read ticks like EventSource does: whenever the stream ends or the server is away, come
    back with Last-Event-ID (after 0.2 s). Appends each tick's id to ``ids`` and counts the
    reconnects in ``reconnects[0]``; runs until cancelled."""
    stream = SSEClient(f"{url}/streams/{TOPIC}", token=token, client=http)
    try:
        while True:
            try:
                if stream.response is None:
                    await stream.open()
                (event,) = await stream.read(1, timeout=60)
            except (EOFError, httpx.TransportError):  # drained, killed, or the server is away
                await stream.close()
                reconnects[0] += 1
                await asyncio.sleep(0.2)
                continue
            if event.event == TICK and event.id is not None:
                ids.append(int(event.id))
    finally:
        await stream.close()


async def publish_through_outages(
    url: str,
    headers: Mapping[str, str],
    count: int,
    published: list[int],
    http: httpx.AsyncClient,
    pause: float = 0.01,
) -> None:
    """Publish ``count`` ticks, each one again until it gets its 201 (the server may be
    restarting or a worker dying); their ids go to ``published``."""
    n = 0
    while n < count:
        try:
            response: httpx.Response | None = await http.post(
                f"{url}/streams/{TOPIC}",
                json={"event": TICK, "data": {"n": n}},
                headers=dict(headers),
            )
        except httpx.TransportError:
            response = None
        if response is None or response.status_code != 201:
            await asyncio.sleep(0.1)
            continue
        published.append(int(response.json()["id"]))
        n += 1
        await asyncio.sleep(pause)


@dataclass
class DisruptedRun:
    published: list[int]  # the ids that got a 201, in order
    received: list[list[int]]  # per reader, every tick id in arrival order
    resumes: int
    complete: bool  # every reader got every published id in time

    @property
    def in_order(self) -> bool:
        return all(ids == sorted(set(ids)) for ids in self.received)


async def publish_through_a_disruption(
    url: str,
    viewer_token: str,
    operator_headers: Mapping[str, str],
    disrupt: Callable[[], Awaitable[None]],
    *,
    readers: int,
    events: int,
    disrupt_after: float = 1.0,
    deliver_within: float = 20.0,
) -> DisruptedRun:
    """``readers`` resuming SSE readers and a publisher of ``events`` ticks that retries each
    one through failures; ``disrupt()`` (a restart, a SIGKILL) runs ``disrupt_after`` seconds
    into the publishing. Returns once every reader has every published id, or the time is up."""
    received: list[list[int]] = [[] for _ in range(readers)]
    published: list[int] = []
    resumes = [0]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None), limits=limits) as http:
        tasks = [
            asyncio.create_task(resuming_reader(url, viewer_token, ids, http, resumes))
            for ids in received
        ]
        try:
            await http.post(
                f"{url}/streams/{TOPIC}",
                json={"event": "warmup", "data": {}},
                headers=dict(operator_headers),
            )
            await asyncio.sleep(0.5)
            publishing = asyncio.create_task(
                publish_through_outages(url, operator_headers, events, published, http)
            )
            await asyncio.sleep(disrupt_after)
            await disrupt()
            await asyncio.wait_for(publishing, 300)
            deadline = time.monotonic() + deliver_within
            while not (complete := all(set(published) <= set(ids) for ids in received)):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return DisruptedRun(published, received, resumes[0], complete)
