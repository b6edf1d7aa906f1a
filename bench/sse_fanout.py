"""SSE fan-out: N subscribers on one topic, R events per second for S seconds.

What it measures, on the server's one worker process (pinned to core 0):
- CPU seconds (utime + stime from /proc) from the first publish until every subscriber has
  every event (or the drain timeout), hence deliveries per CPU-second and CPU µs per delivery;
- latency per delivery: the subscriber's receive time minus the publisher's timestamp in the
  event's data (both taken on this machine's clock, in this process);
- correctness: each subscriber must receive every sequence number exactly once, in order
  (losses, duplicates, reorderings and SSE id regressions are counted);
- RSS before connecting, with N idle connections, and at the end.

The load generator (this process, pinned to core 1) opens the streams with raw asyncio
connections: a minimal HTTP/1.1 GET, then chunked decoding and SSE framing done by hand
(``--parser fast``, the default) or by ``royal.streams.sse.SSEParser`` (``--parser royal``).
Its own CPU use is reported so a saturated client is visible.

Publishing (``--publish``): ``db`` (default) appends events straight into the server's SQLite
file with ``royal.streams.log.append``, so the server's CPU goes to fan-out only and its
dispatcher finds the rows by polling every ROYAL_STREAM_POLL_SECONDS; ``http`` POSTs them to
``/streams/<topic>`` as an operator, so the server's CPU also covers the HTTP publishing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import machine
from bench.servers import RoyalServer
from royal.db import Database, connect_database
from royal.streams import log
from royal.streams.sse import SSEParser

SMOKE = {"subscribers": 50, "rate": 20.0, "seconds": 2.0, "idle_seconds": 0.5}


@dataclass
class Params:
    subscribers: int = 1000
    rate: float = 20.0
    seconds: float = 10.0
    publish: str = "db"
    parser: str = "fast"
    topic: str = "alerts"
    payload_bytes: int = 100
    poll_seconds: float = 0.02
    connect_batch: int = 200
    idle_seconds: float = 2.0
    drain_seconds: float = 15.0
    loop: str = "uvloop"
    profile: str | None = None
    smoke: bool = False

    @property
    def events(self) -> int:
        return max(1, round(self.rate * self.seconds))


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sse",
        help="SSE fan-out: deliveries per server CPU-second, latency, loss, memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = Params()
    parser.add_argument("--subscribers", "-n", type=int, default=defaults.subscribers)
    parser.add_argument("--rate", "-r", type=float, default=defaults.rate, help="events/s")
    parser.add_argument("--seconds", "-s", type=float, default=defaults.seconds)
    parser.add_argument("--publish", choices=("db", "http"), default=defaults.publish)
    parser.add_argument(
        "--parser",
        choices=("fast", "royal"),
        default=defaults.parser,
        help="client SSE parsing: hand-rolled (fast) or royal.streams.sse.SSEParser",
    )
    parser.add_argument("--topic", default=defaults.topic)
    parser.add_argument(
        "--payload-bytes",
        type=int,
        default=defaults.payload_bytes,
        help="approximate size of each event's JSON data",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=defaults.poll_seconds,
        help="ROYAL_STREAM_POLL_SECONDS for the server (how often it reads the SQLite log)",
    )
    parser.add_argument("--connect-batch", type=int, default=defaults.connect_batch)
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=defaults.idle_seconds,
        help="how long to measure the server idle with every stream open",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=defaults.drain_seconds,
        help="how long after the last publish to wait for stragglers",
    )
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default=defaults.loop)
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="run py-spy on the server worker while publishing (.txt: collapsed stacks, "
        "else a flamegraph SVG); the figures of a profiled run are skewed",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"a few seconds' run for CI ({SMOKE['subscribers']} subscribers, "
        f"{SMOKE['seconds']:g} s); other sizes given are ignored",
    )
    parser.set_defaults(run=main)


# --- the load generator's subscribers --------------------------------------------------------


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
    writes: int = 0  # HTTP chunks received: one per server send() while measuring
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
        "ended",
        "chunked",
        "seen",
        "count",
        "max_seq",
        "last_id",
        "_raw",
        "_left",
        "_skip",
        "_sse",
        "_task",
    )

    def __init__(self, tally: Tally, parser: str) -> None:
        self.tally = tally
        self.parser = SSEParser() if parser == "royal" else None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ready = False  # the first frame (retry:) came: the server has subscribed us
        self.ended = False
        self.chunked = True
        self.seen: bytearray | None = None
        self.count = 0
        self.max_seq = -1
        self.last_id = 0
        self._raw = b""  # undecoded transfer-encoding bytes (a partial chunk-size line)
        self._left = 0  # bytes left in the current chunk
        self._skip = 0  # bytes of the CRLF after a chunk still to skip
        self._sse = b""  # an incomplete SSE frame
        self._task: asyncio.Task[None] | None = None

    async def connect(self, host: str, port: int, path: str, token: str) -> None:
        """Open the stream and wait for its first frame; then read it in a task."""
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self.writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            body = await asyncio.wait_for(self.reader.read(2000), 2)
            raise RuntimeError(f"GET {path}: {head.decode(errors='replace')}{body!r}")
        self.chunked = b"transfer-encoding: chunked" in head.lower()
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
        try:
            while not self.ended:
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
        if self.chunked:
            data = self._dechunk(data)
        if self.parser is not None:
            comments = self.parser.comments
            for parsed in self.parser.feed(data):
                event_id = int(parsed.id) if parsed.id and parsed.id.isdigit() else 0
                self._event(parsed.event, event_id, parsed.data, now)
            self.tally.comments += self.parser.comments - comments
            self.ready = self.ready or self.parser.retry is not None
            return
        frames = (self._sse + data).split(b"\n\n") if self._sse else data.split(b"\n\n")
        self._sse = frames.pop()
        for frame in frames:
            if frame.startswith(b"id: "):
                # Royal's frames: "id: N\nevent: NAME\ndata: JSON" (compact JSON: one line).
                newline = frame.index(b"\n")
                data_at = frame.find(b"\ndata: ", newline)
                name = b"message"
                if frame.startswith(b"event: ", newline + 1):
                    name = frame[newline + 8 : frame.index(b"\n", newline + 1)]
                self._event(name.decode(), int(frame[4:newline]), frame[data_at + 7 :], now)
            elif frame.startswith(b":"):
                self.tally.comments += 1
            elif frame.startswith(b"retry:"):
                self.ready = True
            elif frame.startswith(b"data:") or frame.startswith(b"event:"):
                self.tally.other_events += 1  # a frame without an id: not one of ours

    def _dechunk(self, data: bytes) -> bytes:
        buffer = self._raw + data if self._raw else data
        size = len(buffer)
        position = 0
        parts: list[bytes] = []
        while position < size:
            if self._left:
                end = position + self._left
                if end <= size:
                    parts.append(buffer[position:end])
                    self._left, self._skip, position = 0, 2, end
                else:
                    parts.append(buffer[position:])
                    self._left, position = end - size, size
            elif self._skip:
                taken = min(self._skip, size - position)
                self._skip -= taken
                position += taken
            else:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    break
                chunk_size = int(buffer[position:line_end].partition(b";")[0], 16)
                position = line_end + 2
                self.tally.writes += 1
                if chunk_size == 0:
                    self.ended = True
                    position = size
                    break
                self._left = chunk_size
        self._raw = buffer[position:]
        return parts[0] if len(parts) == 1 else b"".join(parts)

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
            asyncio.gather(*(s.connect("127.0.0.1", port, path, token) for s in group)), 60
        )


# --- publishing --------------------------------------------------------------------------------

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
        headers = {"Authorization": f"Bearer {server.token}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:

            async def to_http(data: dict[str, Any]) -> None:
                response = await http.post(
                    f"/streams/{topic}", json={"event": "message", "data": data}
                )
                if response.status_code != 201:
                    raise RuntimeError(f"publish: {response.status_code} {response.text}")

            yield to_http


async def publish_events(publish: Publish, params: Params) -> float:
    """Publish ``params.events`` events on a fixed schedule; returns the seconds it took.

    A publish that falls behind schedule goes out at once (the timestamp is taken then), so a
    slow loop lowers the achieved rate instead of hiding latency.
    """
    loop = asyncio.get_running_loop()
    pad = "x" * max(0, params.payload_bytes - 40)
    start = loop.time()
    for seq in range(params.events):
        delay = start + seq / params.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await publish({"seq": seq, "t": time.time(), "pad": pad})
    return loop.time() - start


# --- the run -------------------------------------------------------------------------------------


class Profiler:
    """py-spy on the server worker for a while (the figures of that run are skewed)."""

    def __init__(self, path: str | None, pid: int, seconds: float) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        if path is None:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        output_format = "raw" if path.endswith(".txt") else "flamegraph"
        command = [spy, "record", "--pid", str(pid), "--output", path, "--format", output_format]
        command += ["--duration", str(max(1, math.ceil(seconds))), "--rate", "200", "--nonblocking"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self) -> None:
        if self.process is not None:
            _, errors = self.process.communicate(timeout=120)
            if self.process.returncode != 0:
                print(f"py-spy failed: {errors.decode(errors='replace')}", file=sys.stderr)


async def server_counters(server: RoyalServer) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
        response = await http.get("/streams")
    counters: dict[str, Any] = response.json().get("counters", {})
    return counters


async def warm_up(server: RoyalServer, params: Params, path: str) -> None:
    """One stream and one event end to end: loads every code path before anything is measured."""
    tally = Tally()
    subscriber = Subscriber(tally, params.parser)
    await subscriber.connect("127.0.0.1", server.port, path, server.token)
    async with publisher(params.publish, server, params.topic) as publish:
        await publish({"seq": -1, "t": time.time()})
        deadline = time.monotonic() + 10
        while tally.warmups == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the warm-up event never arrived")
            await asyncio.sleep(0.01)
    await subscriber.close()


async def measure(server: RoyalServer, params: Params, cores: machine.Cores) -> dict[str, Any]:
    pid = server.worker_pid
    path = f"/streams/{params.topic}"
    await warm_up(server, params, path)
    await asyncio.sleep(0.5)
    counters_before = await server_counters(server)
    rss_start = machine.rss_bytes(pid)

    tally = Tally(subscribers=params.subscribers)
    subscribers = [Subscriber(tally, params.parser) for _ in range(params.subscribers)]
    cpu_before_connect = machine.cpu_seconds(pid)
    connect_started = time.perf_counter()
    await connect_all(subscribers, server.port, path, server.token, params.connect_batch)
    connect_seconds = time.perf_counter() - connect_started
    connect_cpu = machine.cpu_seconds(pid) - cpu_before_connect
    await asyncio.sleep(1.0)
    rss_idle = machine.rss_bytes(pid)

    idle_cpu_start = machine.cpu_seconds(pid)
    idle_started = time.perf_counter()
    await asyncio.sleep(params.idle_seconds)
    idle_cpu_per_second = (machine.cpu_seconds(pid) - idle_cpu_start) / (
        time.perf_counter() - idle_started
    )

    tally.events = params.events
    tally.first = [math.inf] * params.events
    tally.last = [-math.inf] * params.events
    for subscriber in subscribers:
        subscriber.arm(params.events)
    async with publisher(params.publish, server, params.topic) as publish:
        profiler = Profiler(params.profile, pid, params.seconds)
        cores_start = machine.core_times()
        processes_start = machine.all_processes_cpu()
        server_cpu_start = machine.cpu_seconds(pid)
        writes_start, comments_start = tally.writes, tally.comments
        client_cpu_start = machine.own_cpu_seconds()
        started = time.perf_counter()
        started_at = time.time()
        publish_seconds = await publish_events(publish, params)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.all_complete.wait(), params.drain_seconds)
        window = time.perf_counter() - started
        server_cpu = machine.cpu_seconds(pid) - server_cpu_start
        client_cpu = machine.own_cpu_seconds() - client_cpu_start
        cores_end = machine.core_times()
        processes_end = machine.all_processes_cpu()
        writes = tally.writes - writes_start
        comments = tally.comments - comments_start
    rss_end = machine.rss_bytes(pid)
    counters_after = await server_counters(server)
    await asyncio.to_thread(profiler.wait)
    for start in range(0, len(subscribers), 1000):
        await asyncio.gather(*(s.close() for s in subscribers[start : start + 1000]))

    expected = params.events * params.subscribers
    deliveries = tally.received
    return {
        "events_published": params.events,
        "publish_seconds": publish_seconds,
        # The last event is due (events - 1) / rate after the first one.
        "achieved_rate": (params.events - 1) / publish_seconds if publish_seconds else None,
        "window_seconds": window,
        "window_started_at": started_at,
        "expected_deliveries": expected,
        "deliveries": deliveries,
        "lost": expected - deliveries,
        "duplicates": tally.duplicates,
        "reordered": tally.reordered,
        "id_regressions": tally.id_regressions,
        "other_events": tally.other_events,
        "stream_writes": writes,
        "heartbeat_comments": comments,
        "events_per_write": deliveries / writes if writes else None,
        "streams_closed_early": tally.closed_early,
        "subscribers_complete": tally.complete,
        "server_cpu_seconds": server_cpu,
        "server_cpu_utilisation": server_cpu / window,
        "deliveries_per_cpu_second": deliveries / server_cpu if server_cpu else None,
        "cpu_us_per_delivery": server_cpu / deliveries * 1e6 if deliveries else None,
        "cpu_us_per_write": server_cpu / writes * 1e6 if writes else None,
        "server_idle_cpu_per_second": idle_cpu_per_second,
        "client_cpu_seconds": client_cpu,
        # Other processes during the window (a profiler included): a shared machine skews
        # every figure, so a noisy run should be repeated. Interrupt time is mostly the
        # loopback network stack working for the benchmark itself, outside any process.
        "background_cpu_seconds": machine.other_processes_cpu(
            processes_start, processes_end, {os.getpid(), *server.pids()}
        ),
        "interrupt_seconds": {
            f"core{core}": cores_end[core].interrupts - cores_start[core].interrupts
            for core in sorted(cores_end)
        },
        "steal_seconds": sum(cores_end[core].steal - cores_start[core].steal for core in cores_end),
        "client_cpu_utilisation": client_cpu / window,
        "client_cpu_us_per_delivery": client_cpu / deliveries * 1e6 if deliveries else None,
        "latency_ms": _latency_summary(tally.latencies),
        # Per event: when its first and its last subscriber got it. A late first means a slow
        # dispatch (polling, a pause); a wide gap means a slow sweep over the subscribers.
        "first_subscriber_latency_ms": _latency_summary(tally.first),
        "last_subscriber_latency_ms": _latency_summary(tally.last),
        "per_event_ms": [
            [seq, round(first * 1e3, 2), round(last * 1e3, 2)]
            for seq, (first, last) in enumerate(zip(tally.first, tally.last, strict=True))
            if math.isfinite(first)
        ],
        "connect_seconds": connect_seconds,
        "connect_server_cpu_ms_per_stream": connect_cpu / params.subscribers * 1e3,
        "rss_bytes": {"before_connect": rss_start, "idle_connected": rss_idle, "end": rss_end},
        "rss_bytes_per_idle_connection": (rss_idle - rss_start) / params.subscribers,
        "server_counters": {
            key: counters_after.get(key, 0) - counters_before.get(key, 0)
            for key in ("published", "dispatched", "delivered", "catchups", "replayed", "resets")
        },
        "profiled": params.profile is not None,
    }


def _latency_summary(seconds: list[float]) -> dict[str, float | None]:
    """Percentiles in milliseconds (events never received, left at infinity, are ignored)."""
    latencies = sorted(value for value in seconds if math.isfinite(value))

    def at(fraction: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1e3

    return {
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": latencies[-1] * 1e3 if latencies else None,
        "mean": sum(latencies) / len(latencies) * 1e3 if latencies else None,
    }


def run(params: Params) -> dict[str, Any]:
    environment = machine.environment(("httpx", "orjson"))
    cores = machine.Cores.choose()
    # Before and after the run: a virtual machine's speed can drift within minutes.
    environment["calibration_ms"] = calibration = {
        "server_core": machine.calibrate(cores.server),
        "client_core": machine.calibrate(cores.client),
    }
    # Each stream holds a descriptor on both sides; the server inherits this limit.
    machine.raise_fd_limit(params.subscribers + 1024)
    env = {"ROYAL_STREAM_POLL_SECONDS": str(params.poll_seconds)}
    with RoyalServer(env, core=cores.server) as server:
        machine.pin_thread(cores.client)
        if params.loop == "uvloop":
            import uvloop

            loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
        else:
            loop_factory = None
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            results = runner.run(measure(server, params, cores))
    calibration["server_core_after"] = machine.calibrate(cores.server)
    calibration["client_core_after"] = machine.calibrate(cores.client)
    return {
        "benchmark": "sse_fanout",
        "target": server.name,
        "environment": environment,
        "cores": {"server": cores.server, "client": cores.client},
        "parameters": {k: v for k, v in asdict(params).items()} | {"events": params.events},
        "server": server.settings(),
        "results": results,
    }


def failures(report: dict[str, Any]) -> list[str]:
    """What makes the run a failure: any event lost, duplicated or out of order."""
    results = report["results"]
    problems = [
        f"{results[key]} {key.replace('_', ' ')}"
        for key in ("lost", "duplicates", "reordered", "id_regressions", "other_events")
        if results[key]
    ]
    return problems


def format_table(report: dict[str, Any]) -> str:
    p, r, e = report["parameters"], report["results"], report["environment"]
    lat = r["latency_ms"]
    calibration = e["calibration_ms"]
    packages = e["packages"]

    def num(value: float | None, spec: str = ",.0f") -> str:
        return "-" if value is None else format(value, spec)

    rows = [
        ("target", f"{report['target']} ({report['server']['config']}, 1 worker)"),
        (
            "machine",
            f"{e['cores']} cores ({e['cpu_model']}), server core {report['cores']['server']}, "
            f"client core {report['cores']['client']}; calibration (server/client core, "
            f"before -> after) {calibration['server_core']:.1f} / "
            f"{calibration['client_core']:.1f} -> {calibration['server_core_after']:.1f} / "
            f"{calibration['client_core_after']:.1f} ms",
        ),
        (
            "versions",
            f"Python {e['python']}, Quart {packages['quart']}, Hypercorn {packages['hypercorn']}, "
            f"h11 {packages['h11']}, uvloop {packages['uvloop']}, "
            f"royal {e['git_revision'] or '(not a git checkout)'}",
        ),
        (
            "run",
            f"{p['subscribers']:,} subscribers x {p['rate']:g} events/s x {p['seconds']:g} s "
            f"= {p['events']} events, publish={p['publish']}, poll={p['poll_seconds']:g} s, "
            f"parser={p['parser']}, payload~{p['payload_bytes']} B",
        ),
        ("", ""),
        (
            "deliveries",
            f"{r['deliveries']:,} of {r['expected_deliveries']:,} in {r['stream_writes']:,} "
            f"writes ({num(r['events_per_write'], '.2f')} events per write)",
        ),
        (
            "lost / dup / reordered",
            f"{r['lost']:,} / {r['duplicates']:,} / {r['reordered']:,}"
            f" (id regressions {r['id_regressions']}, other events {r['other_events']},"
            f" streams closed early {r['streams_closed_early']})",
        ),
        (
            "window",
            f"{r['window_seconds']:.2f} s (publishing {r['publish_seconds']:.2f} s, "
            f"{num(r['achieved_rate'], '.1f')} events/s achieved)",
        ),
        (
            "server CPU",
            f"{r['server_cpu_seconds']:.2f} s ({r['server_cpu_utilisation']:.0%} of a core; "
            f"idle with streams open: {r['server_idle_cpu_per_second']:.1%})",
        ),
        ("deliveries / CPU-s", num(r["deliveries_per_cpu_second"])),
        (
            "CPU per delivery",
            f"{num(r['cpu_us_per_delivery'], '.1f')} µs "
            f"({num(r['cpu_us_per_write'], '.1f')} µs per write)",
        ),
        (
            "latency p50/p99/max",
            f"{num(lat['p50'], '.1f')} / {num(lat['p99'], '.1f')} / {num(lat['max'], '.1f')} ms"
            f" (p90 {num(lat['p90'], '.1f')}, p99.9 {num(lat['p999'], '.1f')},"
            f" mean {num(lat['mean'], '.1f')})",
        ),
        (
            "per event, ms",
            "first subscriber p50 {} max {}; last subscriber p50 {} max {}".format(
                num(r["first_subscriber_latency_ms"]["p50"], ".1f"),
                num(r["first_subscriber_latency_ms"]["max"], ".1f"),
                num(r["last_subscriber_latency_ms"]["p50"], ".1f"),
                num(r["last_subscriber_latency_ms"]["max"], ".1f"),
            ),
        ),
        (
            "RSS",
            f"{r['rss_bytes']['before_connect'] / 2**20:.1f} MiB before, "
            f"{r['rss_bytes']['idle_connected'] / 2**20:.1f} MiB idle-connected, "
            f"{r['rss_bytes']['end'] / 2**20:.1f} MiB at the end",
        ),
        ("bytes / idle stream", f"{r['rss_bytes_per_idle_connection'] / 1024:.1f} KiB"),
        (
            "connecting",
            f"{r['connect_seconds']:.1f} s, {r['connect_server_cpu_ms_per_stream']:.2f} ms "
            f"server CPU per stream",
        ),
        (
            "client CPU",
            f"{r['client_cpu_seconds']:.2f} s ({r['client_cpu_utilisation']:.0%} of a core, "
            f"{num(r['client_cpu_us_per_delivery'], '.1f')} µs per delivery)",
        ),
        ("server counters", ", ".join(f"{k} {v:,}" for k, v in r["server_counters"].items())),
        (
            "background load",
            "other processes {:.2f} CPU-s, steal {:.2f} s; interrupts {}".format(
                r["background_cpu_seconds"],
                r["steal_seconds"],
                ", ".join(f"{k} {v:.2f} s" for k, v in r["interrupt_seconds"].items()),
            ),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" if name else "" for name, value in rows]
    notes = []
    if r["client_cpu_utilisation"] > 0.9:
        notes.append("the client used over 90% of its core: latencies include its own queueing")
    if r["server_cpu_utilisation"] > 0.9:
        notes.append(
            "the server used over 90% of its core: saturated, it joined backlogs into fewer "
            "writes, so µs per delivery reflects the load offered; compare µs per write"
        )
    if r["background_cpu_seconds"] + r["steal_seconds"] > 0.05 * r["window_seconds"]:
        notes.append(
            "other processes used over 5% of a core meanwhile: the machine was not quiet, "
            "repeat the run"
        )
    if r["profiled"]:
        notes.append("py-spy was sampling the server: these figures are skewed")
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    params = Params(
        subscribers=args.subscribers,
        rate=args.rate,
        seconds=args.seconds,
        publish=args.publish,
        parser=args.parser,
        topic=args.topic,
        payload_bytes=args.payload_bytes,
        poll_seconds=args.poll_seconds,
        connect_batch=args.connect_batch,
        idle_seconds=args.idle_seconds,
        drain_seconds=args.drain_seconds,
        loop=args.loop,
        profile=args.profile,
        smoke=args.smoke,
    )
    if params.smoke:
        for name, value in SMOKE.items():
            setattr(params, name, value)
    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so the server is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run(params)
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    problems = failures(report)
    if problems:
        print(f"FAILED: {', '.join(problems)}", file=sys.stderr)
        return 1
    return 0
