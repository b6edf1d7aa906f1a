"""SSE over real sockets: Royal in a real Hypercorn on 127.0.0.1 (the ``live_royal`` fixture).

Every wait runs under a timeout, so a bug fails a test instead of hanging it. Every test closes
its streams before it ends: an open stream would hold the server's graceful shutdown (10 s) at
teardown.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import statistics
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from royal.db import connect_database
from royal.services import accounts, users
from royal.streams import log
from royal.streams.retention import apply_retention, deleted_through
from royal.streams.sse import ParsedEvent, SSEParser
from royal.testing import SSEClient
from tests.conftest import LiveRoyal

StartRoyal = Callable[..., Awaitable[LiveRoyal]]

MB = 1024 * 1024


# --- helpers ---------------------------------------------------------------------------------


class FrameReader:
    """Raw SSE frames (bytes up to and including the blank line) from a chunk iterator."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    async def next(self, timeout: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout):
            while (end := self._buffer.find(b"\n\n")) < 0:
                self._buffer += await anext(self._chunks)
        frame, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
        return frame


class Dechunker:
    """Decodes an HTTP/1.1 chunked body fed in pieces of any size."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._remaining = 0  # bytes left in the current chunk
        self._crlf = False  # the CRLF after a chunk's data is still to skip
        self.done = False  # the last (empty) chunk arrived

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        body = bytearray()
        while self._buffer and not self.done:
            if self._remaining:
                piece = self._buffer[: self._remaining]
                body += piece
                del self._buffer[: len(piece)]
                self._remaining -= len(piece)
                self._crlf = self._remaining == 0
            elif self._crlf:
                if len(self._buffer) < 2:
                    break
                del self._buffer[:2]
                self._crlf = False
            else:
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    break
                size = int(bytes(self._buffer[:end]).split(b";")[0], 16)
                del self._buffer[: end + 2]
                self._remaining = size
                self.done = size == 0
        return bytes(body)


class RawSSE:
    """An SSE request on a bare socket, for what httpx cannot do: read nothing at all (a
    stalled client, with a small receive buffer so the kernel fills up fast) or reset the
    connection (SO_LINGER 0)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.parser = SSEParser()
        self._head = b""
        self._body = Dechunker()
        self._pending: list[ParsedEvent] = []

    @classmethod
    async def open(
        cls, live: LiveRoyal, path: str, token: str, *, receive_buffer: int | None = None
    ) -> RawSSE:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connect: it sets the advertised window
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", live.server.port)), 5)
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{live.server.port}\r\n"
            f"Accept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        return cls(sock)

    async def _receive(self, timeout: float) -> bytes:
        data = await asyncio.wait_for(
            asyncio.get_running_loop().sock_recv(self.sock, 256 * 1024), timeout
        )
        if not data:
            raise EOFError("the server closed the connection")
        return data

    async def read_head(self, timeout: float = 5.0) -> int:
        async with asyncio.timeout(timeout):
            while b"\r\n\r\n" not in self._head:
                self._head += await self._receive(timeout)
        head, _, rest = self._head.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._pending.extend(self.parser.feed(self._body.feed(rest)))
        return self.status

    async def read(self, count: int, timeout: float) -> list[ParsedEvent]:
        if self.status is None:
            await self.read_head(timeout)
        events: list[ParsedEvent] = []
        async with asyncio.timeout(timeout):
            while len(events) < count:
                if self._pending:
                    take = min(count - len(events), len(self._pending))
                    events.extend(self._pending[:take])
                    del self._pending[:take]
                    continue
                self._pending.extend(self.parser.feed(self._body.feed(await self._receive(60))))
        return events

    def close(self, *, reset: bool = False) -> None:
        if reset:  # close with an RST instead of a FIN
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


async def counters(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/streams")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["counters"]
    return result


async def wait_for_counters(
    http: httpx.AsyncClient, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> tuple[dict[str, Any], float]:
    """Poll GET /streams until ``predicate(counters)``; returns them and the seconds it took."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not predicate(found := await counters(http)):
            await asyncio.sleep(0.01)
    return found, time.monotonic() - started


async def internal_subscriptions(http: httpx.AsyncClient) -> int:
    """Subscriptions Royal holds itself (the job runner's, on ``jobs``), once settled."""
    previous = None
    async with asyncio.timeout(5):
        while True:
            stats = (await http.get("/streams")).json()
            found = stats["counters"]
            current = found["subscriptions"] - found["sse_open"] - found["ws_open"]
            if stats["ready"] and current == previous:
                return int(current)
            previous = current
            await asyncio.sleep(0.1)


def stats_client(live: LiveRoyal) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=live.url, headers=live.headers("viewer"), timeout=10)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def worker_pid(live: LiveRoyal, reported_pid: int) -> int:
    """The Hypercorn worker: a child of ``royal serve`` (which also has a resource tracker)."""
    assert live.server.process is not None
    parent = live.server.process.pid
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    assert str(reported_pid) in children, (reported_pid, children)
    return reported_pid


def ids(events: list[ParsedEvent]) -> list[int]:
    return [int(event.id) for event in events if event.id is not None]


# --- 1. framing ------------------------------------------------------------------------------


async def test_framing_and_headers(live_royal: StartRoyal) -> None:
    live = await live_royal()
    headers = {**live.headers("viewer"), "Accept-Encoding": "gzip, deflate, br"}
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=10) as http,
        http.stream("GET", "/streams/alerts", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers
        assert "content-length" not in response.headers
        frames = FrameReader(response.aiter_raw())
        assert await frames.next() == b"retry: 3000\n\n"

        data = {"text": "two\nlines\r\nand a \u2603", "n": 1, "nested": {"ok": True}}
        event_id = await live.publish("alerts", data, event="alert.raised")
        frame = (await frames.next()).decode()
        lines = frame.split("\n")
        # JSON escapes line breaks, so the data is always a single data: line.
        assert lines[:2] == [f"id: {event_id}", "event: alert.raised"]
        assert lines[2].startswith("data: ") and lines[3:] == ["", ""]
        assert json.loads(lines[2].removeprefix("data: ")) == data


# --- 2. resume exactness ---------------------------------------------------------------------


@dataclass
class ResumeRun:
    published: list[int]  # the ids the publishers got back
    received: list[list[int]]  # per client, the ids it read, over all its connections
    connections: list[int]  # per client, how many connections it made
    seconds: float


async def resume_workload(
    live: LiveRoyal, seed: int, *, total: int = 1000, clients: int = 5, publishers: int = 4
) -> ResumeRun:
    """``clients`` read 1-100 events each, drop the connection and resume (alternately with
    the Last-Event-ID header and ``?last_event_id=``) until each has ``total``, while
    ``publishers`` post ``total`` events over HTTP: replay and live paths interleave."""
    path = "/streams/alerts"
    bearer = live.headers("viewer")
    published: list[int] = []

    async def publisher(n: int) -> None:
        rng = random.Random(f"{seed}-publisher-{n}")
        async with httpx.AsyncClient(
            base_url=live.url, headers=live.headers("operator"), timeout=10
        ) as http:
            for i in range(total // publishers):
                response = await http.post(
                    "/streams/alerts", json={"event": "load", "data": {"p": n, "i": i}}
                )
                assert response.status_code == 201, response.text
                published.append(response.json()["id"])
                if rng.random() < 0.2:
                    await asyncio.sleep(rng.uniform(0, 0.02))

    async def read(
        http: httpx.AsyncClient, path: str, headers: dict[str, str], want: int
    ) -> list[ParsedEvent]:
        """One connection: read ``want`` events, then drop it (with whatever else came)."""
        parser = SSEParser()
        events: list[ParsedEvent] = []
        async with asyncio.timeout(10), http.stream("GET", path, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            async for chunk in response.aiter_raw():
                events.extend(parser.feed(chunk))
                if len(events) >= want:
                    break
        return events[:want]

    async def client(n: int) -> tuple[list[int], int]:
        rng = random.Random(f"{seed}-client-{n}")
        received: list[int] = []
        connections = 0
        # One httpx client, a new connection each time (an unfinished response is never
        # reused); SSEClient would build a new httpx client, and TLS context, per connection.
        async with httpx.AsyncClient(base_url=live.url, headers=bearer, timeout=10) as http:
            while len(received) < total:
                want = min(rng.randint(1, 100), total - len(received))
                last = received[-1] if received else 0
                if connections % 2 == 0:
                    events = await read(http, path, {"Last-Event-ID": str(last)}, want)
                else:
                    events = await read(http, f"{path}?last_event_id={last}", {}, want)
                assert all(event.event == "load" for event in events)
                received.extend(ids(events))
                connections += 1
        return received, connections

    started = time.monotonic()
    async with asyncio.timeout(45):
        results, _ = await asyncio.gather(
            asyncio.gather(*(client(n) for n in range(clients))),
            asyncio.gather(*(publisher(n) for n in range(publishers))),
        )
    return ResumeRun(
        published,
        [received for received, _ in results],
        [connections for _, connections in results],
        time.monotonic() - started,
    )


def seeded() -> int:
    seed = int(os.environ.get("ROYAL_TEST_SEED") or random.randrange(2**32))
    print(f"seed={seed} (rerun with ROYAL_TEST_SEED={seed})")
    return seed


async def test_resume_is_exact_under_concurrent_publishing(live_royal: StartRoyal) -> None:
    """5 clients read 1-100 events, drop the connection and resume, while 4 publishers post
    1,000 events over HTTP: each client gets exactly the published ids, in order."""
    live = await live_royal()
    run = await resume_workload(live, seeded())
    found = (await live.stats())["counters"]

    expected = sorted(run.published)
    assert len(expected) == 1000
    for n, received in enumerate(run.received):
        missing = sorted(set(expected) - set(received))
        duplicates = len(received) - len(set(received))
        assert not missing and not duplicates, (n, missing[:10], duplicates)
        assert received == expected, n
        print(f"client {n}: {len(received)} events over {run.connections[n]} connections")
    # Both paths were used: replay from the log, and live delivery from the broker.
    live_deliveries = found["delivered"] - found["replayed"]
    print(f"{run.seconds:.2f} s; counters {found}")
    assert found["replayed"] > 0 and live_deliveries > 0, found


# --- 3. stalled subscriber -------------------------------------------------------------------


async def test_a_stalled_subscriber_neither_grows_memory_nor_delays_others(
    live_royal: StartRoyal,
) -> None:
    count, chunk, pad = 10_000, 500, "x" * 2000  # ~2 KB per event: 20 MB in all
    live = await live_royal()
    token = live.tokens["viewer"]
    async with stats_client(live) as http:
        stats = (await http.get("/streams")).json()
        assert stats["subscriber_buffer"] == 1000  # the default, not tuned for this test
        pid = worker_pid(live, stats["worker_pid"])

        stalled = await RawSSE.open(live, "/streams/alerts", token, receive_buffer=4096)
        normal = await SSEClient(f"{live.url}/streams/alerts", token=token).open()
        background: list[asyncio.Task[Any]] = []
        try:
            await wait_for_counters(http, lambda c: c["sse_open"] == 2)
            baseline = peak = rss_bytes(pid)
            done = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, rss_bytes(pid))
                    await asyncio.sleep(0.02)

            async def read_normal() -> list[tuple[int, float]]:
                got: list[tuple[int, float]] = []
                while len(got) < count:
                    (event,) = await normal.read(1, timeout=20)
                    arrived = time.time()
                    got.append((int(event.id or 0), arrived - json.loads(event.data)["t"]))
                return got

            sampler = asyncio.create_task(sample())
            reader = asyncio.create_task(read_normal())
            background.extend((sampler, reader))
            inserted: list[int] = []
            started = time.monotonic()
            db = connect_database(live.database_url)
            async with db:
                for start in range(0, count, chunk):
                    now = time.time()
                    items = [
                        ("alerts", "load", {"n": n, "t": now, "pad": pad})
                        for n in range(start, start + chunk)
                    ]
                    inserted.extend(event.id for event in await log.append_many(db, items))
                    await asyncio.sleep(0.05)
            received = await asyncio.wait_for(reader, 20)
            normal_seconds = time.monotonic() - started
            peak = max(peak, rss_bytes(pid))
            done.set()
            await sampler

            # (b) the normal client got everything, in order, while the other one stalled.
            assert [event_id for event_id, _ in received] == inserted
            assert normal_seconds < 20  # loose: the figures are printed below
            latencies = sorted(latency for _, latency in received)
            print(
                f"normal subscriber: {count} events in {normal_seconds:.2f} s; latency "
                f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
                f"p99 {latencies[int(0.99 * count)] * 1000:.0f} ms, "
                f"max {latencies[-1] * 1000:.0f} ms"
            )
            # (a) bounded memory: the stalled subscriber holds at most STREAM_SUBSCRIBER_BUFFER
            # (1,000) events, ~2 KB of data plus ~2 KB of encoded frame each, ~4 MB, plus one
            # batch blocked in Hypercorn's send; on overflow it drops them and catches up from
            # the log. An unbounded queue would hold all 10,000 (~40 MB with the frames) plus
            # per-event overhead, so 40 MB of growth is the line.
            growth = peak - baseline
            print(
                f"worker RSS {baseline / MB:.1f} MB -> peak {peak / MB:.1f} MB (+{growth / MB:.1f})"
            )
            assert growth < 40 * MB
            # (d) the stalled subscriber overflowed and will catch up from the log.
            found = await counters(http)
            assert found["catchups"] >= 1, found
            assert found["sse_open"] == 2, found

            # (c) now the stalled client reads, and gets all 10,000, in order, nothing lost.
            stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
            caught_up = time.monotonic()
            assert await stalled.read_head() == 200
            late = await stalled.read(count, timeout=30)
            print(f"stalled subscriber read {count} events in {time.monotonic() - caught_up:.2f} s")
            assert ids(late) == inserted
            assert [json.loads(event.data)["n"] for event in late] == list(range(count))
            print(f"counters {await counters(http)}")
        finally:
            for task in background:
                task.cancel()
            stalled.close()
            await normal.close()


# --- 4. disconnect ---------------------------------------------------------------------------


async def test_a_disconnect_frees_the_subscription_within_a_second(
    live_royal: StartRoyal,
) -> None:
    live = await live_royal()
    token = live.tokens["viewer"]
    url = f"{live.url}/streams/alerts"
    async with stats_client(live) as http:
        internal = await internal_subscriptions(http)
        closed_cleanly = [await SSEClient(url, token=token).open() for _ in range(2)]
        reset = await RawSSE.open(live, "/streams/jobs", token)
        assert await reset.read_head() == 200
        await wait_for_counters(
            http, lambda c: c["sse_open"] == 3 and c["subscriptions"] == internal + 3
        )

        for stream in closed_cleanly:
            await stream.close()
        _, after_close = await wait_for_counters(
            http, lambda c: c["sse_open"] == 1 and c["subscriptions"] == internal + 1
        )
        reset.close(reset=True)
        _, after_reset = await wait_for_counters(
            http, lambda c: c["sse_open"] == 0 and c["subscriptions"] == internal
        )
    print(f"freed after close: {after_close * 1000:.0f} ms; after RST: {after_reset * 1000:.0f} ms")
    assert after_close < 1.0
    assert after_reset < 1.0


async def test_clients_leaving_while_events_flow_free_their_subscriptions(
    live_royal: StartRoyal,
) -> None:
    """The resume workload: clients leave right after reading some events while more flow,
    the moment a disconnect most often meets a wakeup. Every subscription must be freed.

    Regression: Subscription.next_batch() waited with ``asyncio.wait_for``, which on Python
    3.11 swallows a cancellation that lands in the same loop iteration as the wakeup
    (CPython gh-86296); the stream then wrote into the closed socket and, once idle, waited
    forever. This workload leaked 3-13 of ~160 streams on every run.
    """
    live = await live_royal()
    async with stats_client(live) as http:
        internal = await internal_subscriptions(http)
    run = await resume_workload(live, seeded(), clients=8)
    async with stats_client(live) as http:
        try:
            _, elapsed = await wait_for_counters(
                http,
                lambda c: c["sse_open"] == 0 and c["subscriptions"] == internal,
                timeout=2,
            )
        except TimeoutError:
            found = await counters(http)
            raise AssertionError(
                f"{found['sse_open']} of {sum(run.connections)} streams never freed, "
                f"{found['subscriptions'] - internal} subscriptions: {found}"
            ) from None
    print(f"{sum(run.connections)} connections, all freed {elapsed * 1000:.0f} ms after the last")
    assert elapsed < 1.0


# --- 5. RESPONSE_TIMEOUT ---------------------------------------------------------------------


async def test_an_idle_stream_outlives_the_response_timeout(live_royal: StartRoyal) -> None:
    live = await live_royal(
        env={"ROYAL_RESPONSE_TIMEOUT": "1", "ROYAL_STREAM_HEARTBEAT_SECONDS": "0.5"}
    )

    async def publish_later() -> int:
        await asyncio.sleep(3)
        return await live.publish("alerts", {"still": "alive"})

    async with SSEClient(f"{live.url}/streams/alerts", token=live.tokens["viewer"]) as stream:
        publishing = asyncio.create_task(publish_later())
        (event,) = await stream.read(1, timeout=8)  # reads heartbeats until the event comes
        event_id = await publishing
    assert int(event.id or 0) == event_id
    assert json.loads(event.data) == {"still": "alive"}
    assert stream.parser.comments >= 3, stream.parser.comments


async def test_a_ping_follows_a_live_event_within_one_heartbeat(live_royal: StartRoyal) -> None:
    """Pings count from the last write, a live event included: a stream is never silent for
    two heartbeats, the bound on finding a vanished client (docs/realtime.md)."""
    live = await live_royal(env={"ROYAL_STREAM_HEARTBEAT_SECONDS": "1"})
    headers = {"Authorization": f"Bearer {live.tokens['viewer']}"}
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http,
        http.stream("GET", f"{live.url}/streams/alerts", headers=headers) as response,
    ):
        frames = FrameReader(response.aiter_raw())
        while b": ping" not in await frames.next():
            pass  # the retry frame, then the first ping
        await live.publish("alerts", {"n": 1})  # just after a ping: the worst moment
        while b"event: message" not in (frame := await frames.next()):
            assert b": ping" not in frame
        event_at = time.monotonic()
        assert b": ping" in await frames.next(timeout=3)
        silence = time.monotonic() - event_at
    assert 0.5 < silence < 1.5, f"{silence:.2f} s between the event and the next ping"


# --- 6. topics and bad requests --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/streams/alerts,jobs", "/streams/alerts?topic=jobs"])
async def test_several_topics_in_one_stream(live_royal: StartRoyal, path: str) -> None:
    live = await live_royal()
    async with (
        stats_client(live) as http,
        SSEClient(f"{live.url}{path}", token=live.tokens["viewer"]) as stream,
    ):
        await wait_for_counters(http, lambda c: c["sse_open"] == 1)
        sent = []
        for n, topic in enumerate(["alerts", "jobs", "events", "jobs", "alerts", "system"]):
            event_id = await live.publish(topic, {"probe": topic, "n": n})
            if topic in ("alerts", "jobs"):
                sent.append((event_id, topic))
        # Royal publishes on `jobs` itself (its maintenance job): skip those events.
        events: list[ParsedEvent] = []
        while len([e for e in events if "probe" in json.loads(e.data)]) < len(sent):
            events.extend(await stream.read(1, timeout=5))
    assert ids(events) == sorted(ids(events))  # one stream, in id order
    mine = [(int(e.id or 0), json.loads(e.data)) for e in events]
    assert [(i, data["probe"]) for i, data in mine if "probe" in data] == sent


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        ("/streams/nope", {}, "BAD_TOPIC"),
        ("/streams/alerts?topic=nope", {}, "BAD_TOPIC"),
        ("/streams/Alerts!", {}, "BAD_TOPIC"),
        ("/streams/alerts,,jobs", {}, "BAD_TOPIC"),
        ("/streams/alerts", {"Last-Event-ID": "abc"}, "BAD_LAST_EVENT_ID"),
        ("/streams/alerts", {"Last-Event-ID": "-1"}, "BAD_LAST_EVENT_ID"),
        ("/streams/alerts?last_event_id=abc", {}, "BAD_LAST_EVENT_ID"),
    ],
)
async def test_bad_stream_requests_get_400_json(
    live_royal: StartRoyal, path: str, headers: dict[str, str], code: str
) -> None:
    live = await live_royal()
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        response = await http.get(path, headers={**live.headers("viewer"), **headers})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status_code"] == 400 and body["code"] == code, body


# Unicode digits, a number longer than int() takes, and one beyond a 63-bit id.
@pytest.mark.parametrize(
    ("path", "headers"),
    [
        pytest.param("/streams/alerts", {"Last-Event-ID": b"\xb2"}, id="superscript-header"),
        pytest.param("/streams/alerts?last_event_id=%C2%B2", {}, id="superscript-query"),
        pytest.param("/streams/alerts?last_event_id=" + "9" * 5000, {}, id="5000-digits"),
        pytest.param("/streams/alerts", {"Last-Event-ID": "9" * 25}, id="beyond-64-bits"),
    ],
)
async def test_an_unparsable_last_event_id_is_a_400_not_a_500(
    live_royal: StartRoyal, path: str, headers: dict[str, Any]
) -> None:
    live = await live_royal()
    await live.publish("alerts", {"n": 1})
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=10) as http,
        http.stream("GET", path, headers={**live.headers("viewer"), **headers}) as response,
    ):
        status = response.status_code
        body = b"" if status == 200 else await response.aread()
    assert status == 400, (status, body)
    assert json.loads(body)["code"] == "BAD_LAST_EVENT_ID"


# --- 7. auth ---------------------------------------------------------------------------------


async def test_stream_auth_roles_and_tickets(live_royal: StartRoyal) -> None:
    live = await live_royal()
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        anonymous = await http.get("/streams/alerts")
        assert anonymous.status_code == 401
        assert anonymous.json()["code"] == "AUTHENTICATION_REQUIRED"

        forbidden = await http.post(
            "/streams/alerts", json={"data": {"x": 1}}, headers=live.headers("viewer")
        )
        assert forbidden.status_code == 403 and forbidden.json()["status_code"] == 403

        created = await http.post(
            "/streams/alerts",
            json={"event": "alert.raised", "data": {"x": 1}},
            headers=live.headers("operator"),
        )
        assert created.status_code == 201
        first_id = created.json()["id"]
        assert created.json() == {"id": first_id, "topic": "alerts", "event": "alert.raised"}

        issued = await http.post("/auth/ticket", headers=live.headers("viewer"))
        assert issued.status_code == 200
        ticket = issued.json()["ticket"]

    # A viewer reads alerts, with a bearer token or with the ticket (no header at all).
    for stream in (
        SSEClient(f"{live.url}/streams/alerts", token=live.tokens["viewer"], last_event_id=0),
        SSEClient(f"{live.url}/streams/alerts?ticket={ticket}&last_event_id=0"),
    ):
        async with stream:
            assert stream.response is not None and stream.response.status_code == 200
            (event,) = await stream.read(1, timeout=5)
            assert int(event.id or 0) == first_id

    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        reused = await http.get(f"/streams/alerts?ticket={ticket}")
    assert reused.status_code == 401
    assert reused.json()["code"] == "AUTHENTICATION_REQUIRED"


# --- 8. revocation ---------------------------------------------------------------------------


async def test_logout_ends_an_open_stream_with_a_revoked_event(live_royal: StartRoyal) -> None:
    live = await live_royal()
    async with SSEClient(f"{live.url}/streams/alerts", token=live.tokens["viewer"]) as stream:
        await live.publish("alerts", {"before": "logout"})
        (before,) = await stream.read(1, timeout=5)
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            started = time.monotonic()
            logout = await http.post("/auth/logout", headers=live.headers("viewer"))
            assert logout.status_code == 200
            events = await stream.read_until_closed(timeout=5)
            elapsed = time.monotonic() - started
    print(f"logout -> stream closed in {elapsed * 1000:.0f} ms")
    assert json.loads(before.data) == {"before": "logout"}
    assert [event.event for event in events] == ["revoked"]
    assert json.loads(events[0].data) == {"reason": "revoked"}
    assert elapsed < 5.0


async def test_disabling_the_user_elsewhere_ends_an_open_stream(live_royal: StartRoyal) -> None:
    live = await live_royal()
    async with SSEClient(f"{live.url}/streams/alerts", token=live.tokens["other"]) as stream:
        async with stats_client(live) as http:
            await wait_for_counters(http, lambda c: c["sse_open"] == 1)
        db = connect_database(live.database_url)
        async with db:
            user = await users.select_user_by_name(db, "other")
            assert user is not None
            started = time.monotonic()
            await accounts.disable_account(db, user.id)
        events = await stream.read_until_closed(timeout=5)
        elapsed = time.monotonic() - started
    print(f"disabled in the database -> stream closed in {elapsed * 1000:.0f} ms")
    assert [event.event for event in events] == ["revoked"]
    assert elapsed < 5.0


# --- 9. retention ----------------------------------------------------------------------------


async def test_a_resume_below_the_retention_watermark_gets_a_reset(
    live_royal: StartRoyal,
) -> None:
    live = await live_royal()
    db = connect_database(live.database_url)
    async with db:
        stored = await log.append_many(db, [("alerts", "old", {"n": n}) for n in range(20)])
        stored_ids = [event.id for event in stored]
        watermark = stored_ids[9]
        await db.execute(
            """UPDATE stream_events SET created_at = '2000-01-01T00:00:00.000Z'
                WHERE id BETWEEN :first AND :id""",
            {"first": stored_ids[0], "id": watermark},
        )
        # Royal's own maintenance job (at startup) may have run retention first: either way
        # the watermark is the newest expired id.
        await apply_retention(db, 3600)
        assert await deleted_through(db) == watermark
        assert await log.read_since(db, 0, topics=["alerts"]) == stored[10:]
    url = f"{live.url}/streams/alerts"
    token = live.tokens["viewer"]

    for resume_from in (stored_ids[2], 0):
        async with SSEClient(url, token=token, last_event_id=resume_from) as stream:
            reset, *rest = await stream.read(11, timeout=5)
        assert (reset.event, int(reset.id or 0)) == ("reset", watermark)
        assert json.loads(reset.data) == {
            "reason": "retention",
            "last_event_id": resume_from,
            "resume_from": watermark,
        }
        assert ids(rest) == stored_ids[10:]

    # From the watermark itself nothing is lost: no reset.
    async with SSEClient(url, token=token, last_event_id=watermark) as stream:
        assert ids(await stream.read(10, timeout=5)) == stored_ids[10:]

    found = (await live.stats())["counters"]
    assert found["resets"] == 2, found


async def test_a_resume_from_an_unknown_id_gets_a_reset_then_live_events(
    live_royal: StartRoyal,
) -> None:
    live = await live_royal()
    newest = await live.publish("alerts", {"n": 0})
    async with SSEClient(
        f"{live.url}/streams/alerts", token=live.tokens["viewer"], last_event_id=newest + 1000
    ) as stream:
        (reset,) = await stream.read(1, timeout=5)
        # The newest id in the whole log: ours, or a later one of another topic (the start-up
        # maintenance job's events on `jobs` can land in between).
        resume_from = int(reset.id or 0)
        assert reset.event == "reset" and resume_from >= newest
        assert json.loads(reset.data) == {
            "reason": "unknown_id",
            "last_event_id": newest + 1000,
            "resume_from": resume_from,
        }
        following = await live.publish("alerts", {"n": 1})
        (event,) = await stream.read(1, timeout=5)
    assert following > resume_from
    assert (int(event.id or 0), json.loads(event.data)) == (following, {"n": 1})


# --- 10. shutdown ----------------------------------------------------------------------------


async def test_sigterm_ends_open_streams_with_a_retry_hint(live_royal: StartRoyal) -> None:
    live = await live_royal()
    graceful_timeout = 10  # hypercorn.toml
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=10) as http,
        http.stream("GET", "/streams/alerts", headers=live.headers("viewer")) as response,
    ):
        chunks = response.aiter_raw()
        frames = FrameReader(chunks)
        assert await frames.next() == b"retry: 3000\n\n"
        started = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(live.server.stop))
        tail = b""
        ending = "clean"
        try:
            async with asyncio.timeout(graceful_timeout + 5):
                async for chunk in chunks:
                    tail += chunk
        except (httpx.RemoteProtocolError, httpx.ReadError) as error:
            ending = f"{type(error).__name__}: {error}"
        elapsed = time.monotonic() - started
        exit_code = await asyncio.wait_for(stopping, 30)
    print(f"stream ended after {elapsed:.2f} s ({ending}); tail {tail!r}; exit {exit_code}")
    assert elapsed < graceful_timeout + 2
    assert exit_code == 0
    parser = SSEParser()
    parser.feed(tail)
    assert parser.retry is not None and parser.retry <= 1000, tail
    assert ending == "clean"


# --- the test client itself ------------------------------------------------------------------


async def test_sse_client_reads_on_after_a_read_timed_out(live_royal: StartRoyal) -> None:
    live = await live_royal()
    async with SSEClient(f"{live.url}/streams/alerts", token=live.tokens["viewer"]) as stream:
        with pytest.raises(TimeoutError):
            await stream.read(1, timeout=0.3)
        event_id = await live.publish("alerts", {"n": 1})
        (event,) = await stream.read(1, timeout=5)
    assert int(event.id or 0) == event_id
