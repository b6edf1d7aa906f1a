"""The ``sse`` benchmark's load: raw subscribers that check every event, and the publisher.

Each subscriber reads its stream over a raw asyncio connection (``bench.rawhttp``) and
accounts every event in one shared ``Tally``; events carry their sequence number and the
publisher's ``time.time()`` in their JSON data.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench import rawhttp
from bench.servers import RoyalServer
from royal.db import Database, connect_database
from royal.streams import log
from royal.streams.sse import SSEParser

HOST = "127.0.0.1"


@dataclass
class Tally:
    """What every subscriber saw, together."""

    events: int = 0  # events published in the measured window (sequence numbers 0..events-1)
    latencies: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)  # per event: the earliest latency
    last: list[float] = field(default_factory=list)  # per event: the latest latency
    received: int = 0  # distinct (subscriber, sequence) pairs
    duplicates: int = 0
    reordered: int = 0
    id_regressions: int = 0
    other_events: int = 0  # reset, revoked, ...: none are expected
    warmups: int = 0
    comments: int = 0
    closed_early: int = 0
    complete: int = 0
    subscribers: int = 0
    all_complete: asyncio.Event = field(default_factory=asyncio.Event)


class Subscriber:
    """One SSE stream over a raw asyncio connection; accounts each event in the tally."""

    __slots__ = (
        "tally",
        "parser",
        "reader",
        "writer",
        "ready",
        "body",
        "frames",
        "seen",
        "count",
        "max_seq",
        "last_id",
        "_task",
    )

    def __init__(self, tally: Tally, parser: str) -> None:
        self.tally = tally
        self.parser = SSEParser() if parser == "royal" else None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ready = False  # the first frame (retry:) came: the server has subscribed us
        self.body: rawhttp.Dechunker | None = None  # None: not chunked
        self.frames = rawhttp.Frames()
        self.seen: bytearray | None = None
        self.count = 0
        self.max_seq = -1
        self.last_id = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def writes(self) -> int:
        """HTTP chunks received: one per server ``send()``."""
        return self.body.chunks if self.body is not None else 0

    async def connect(self, host: str, port: int, path: str, token: str) -> None:
        """Open the stream and wait for its first frame; then read it in a task."""
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self.writer.write(rawhttp.stream_request(host, port, path, token))
        if await rawhttp.read_stream_head(self.reader, f"GET {path}"):
            self.body = rawhttp.Dechunker()
        while not self.ready:
            data = await self.reader.read(65536)
            if not data:
                raise RuntimeError(f"GET {path}: the stream ended before its first frame")
            self.feed(data, time.time())
        self._task = asyncio.create_task(self._read())

    def arm(self, events: int) -> None:
        self.seen = bytearray(events)

    async def _read(self) -> None:
        assert self.reader is not None
        read = self.reader.read
        feed = self.feed
        body = self.body
        try:
            while body is None or not body.ended:
                data = await read(262144)
                if not data:
                    break
                feed(data, time.time())
        except (ConnectionError, OSError):
            pass
        if self.seen is not None and self.count < self.tally.events:
            self.tally.closed_early += 1

    def feed(self, data: bytes, now: float) -> None:
        """Bytes from the socket: undo chunked encoding, split frames, account events."""
        if self.body is not None:
            data = self.body.feed(data)
        if self.parser is not None:
            comments = self.parser.comments
            for parsed in self.parser.feed(data):
                event_id = int(parsed.id) if parsed.id and parsed.id.isdigit() else 0
                self._event(parsed.event, event_id, parsed.data, now)
            self.tally.comments += self.parser.comments - comments
            self.ready = self.ready or self.parser.retry is not None
            return
        for frame in self.frames.split(data):
            if frame.startswith(b"id: "):
                name, event_id, event_data = rawhttp.royal_event(frame)
                self._event(name.decode(), event_id, event_data, now)
            elif frame.startswith(b":"):
                self.tally.comments += 1
            elif frame.startswith(b"retry:"):
                self.ready = True
            elif frame.startswith(b"data:") or frame.startswith(b"event:"):
                self.tally.other_events += 1  # a frame without an id: not one of ours

    def _event(self, name: str, event_id: int, data: bytes | str, now: float) -> None:
        tally = self.tally
        try:
            payload = orjson.loads(data)
            seq = payload["seq"]
            sent = payload["t"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            tally.other_events += 1
            return
        if seq < 0:
            tally.warmups += 1
            return
        seen = self.seen
        if seen is None or seq >= len(seen) or name != "message":
            tally.other_events += 1
            return
        if seen[seq]:
            tally.duplicates += 1
            return
        seen[seq] = 1
        latency = now - sent
        tally.latencies.append(latency)
        if latency < tally.first[seq]:
            tally.first[seq] = latency
        if latency > tally.last[seq]:
            tally.last[seq] = latency
        tally.received += 1
        if seq < self.max_seq:
            tally.reordered += 1
        else:
            self.max_seq = seq
        if event_id <= self.last_id:
            tally.id_regressions += 1
        self.last_id = event_id
        self.count += 1
        if self.count == tally.events:
            tally.complete += 1
            if tally.complete == tally.subscribers:
                tally.all_complete.set()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def connect_all(
    subscribers: list[Subscriber], port: int, path: str, token: str, batch: int
) -> None:
    """Open the streams ``batch`` at a time, each batch fully subscribed before the next."""
    for start in range(0, len(subscribers), batch):
        group = subscribers[start : start + batch]
        await asyncio.wait_for(
            asyncio.gather(*(s.connect(HOST, port, path, token) for s in group)), 60
        )


Publish = Callable[[dict[str, Any]], Awaitable[None]]


@contextlib.asynccontextmanager
async def publisher(mode: str, server: RoyalServer, topic: str) -> AsyncIterator[Publish]:
    """``publish(data)`` for the chosen mode, with its connection open for the block."""
    if mode == "db":
        database: Database = connect_database(server.database_url)
        async with database:

            async def to_db(data: dict[str, Any]) -> None:
                await log.append(database, topic, "message", data)

            yield to_db
    else:
        async with http_publisher(server.url, server.token, topic) as to_http:
            yield to_http


@contextlib.asynccontextmanager
async def http_publisher(url: str, token: str, topic: str) -> AsyncIterator[Publish]:
    """``publish(data)`` as ``POST /streams/<topic>`` to any server at ``url`` (Royal or a
    peer), one after the other on one keep-alive connection; any answer but 201 raises."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:

        async def to_http(data: dict[str, Any]) -> None:
            response = await http.post(f"/streams/{topic}", json={"event": "message", "data": data})
            if response.status_code != 201:
                raise RuntimeError(f"publish: {response.status_code} {response.text}")

        yield to_http


async def publish_events(publish: Publish, events: int, rate: float, payload_bytes: int) -> float:
    """Publish ``events`` events on a fixed schedule; returns the seconds it took.

    A publish that falls behind schedule goes out at once (the timestamp is taken then), so a
    slow loop lowers the achieved rate instead of hiding latency.
    """
    loop = asyncio.get_running_loop()
    pad = "x" * max(0, payload_bytes - 40)
    start = loop.time()
    for seq in range(events):
        delay = start + seq / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await publish({"seq": seq, "t": time.time(), "pad": pad})
    return loop.time() - start
