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
import math
import time
from dataclasses import dataclass
from typing import Any

from bench import harness, machine
from bench.harness import option
from bench.report import caveats, num, render
from bench.servers import RoyalServer
from bench.sse_load import HOST, Subscriber, Tally, connect_all, publish_events, publisher
from bench.stats import summary
from bench.window import Profiler, Window

SMOKE = {"subscribers": 50, "rate": 20.0, "seconds": 2.0, "idle_seconds": 0.5}


@dataclass
class Params:
    subscribers: int = option(1000, "-n")
    rate: float = option(20.0, "-r", help="events/s")
    seconds: float = option(10.0, "-s")
    publish: str = option("db", choices=("db", "http"))
    parser: str = option(
        "fast",
        choices=("fast", "royal"),
        help="client SSE parsing: hand-rolled (fast) or royal.streams.sse.SSEParser",
    )
    topic: str = option("alerts")
    payload_bytes: int = option(100, help="approximate size of each event's JSON data")
    poll_seconds: float = option(
        0.02, help="ROYAL_STREAM_POLL_SECONDS for the server (how often it reads the SQLite log)"
    )
    connect_batch: int = option(200)
    idle_seconds: float = option(
        2.0, help="how long to measure the server idle with every stream open"
    )
    drain_seconds: float = option(
        15.0, help="how long after the last publish to wait for stragglers"
    )
    loop: str = "uvloop"
    profile: str | None = None
    smoke: bool = False

    @property
    def events(self) -> int:
        return max(1, round(self.rate * self.seconds))


def add_parser(subparsers: Any) -> None:
    help_line = "SSE fan-out: deliveries per server CPU-second, latency, loss, memory"
    size = f"{SMOKE['subscribers']} subscribers, {SMOKE['seconds']:g} s"
    harness.add_parser(
        subparsers, "sse", help_line, __doc__, Params, main, profiled="while publishing", smoke=size
    )


async def warm_up(server: RoyalServer, params: Params, path: str) -> None:
    """One stream and one event end to end: loads every code path before anything is measured."""
    tally = Tally()
    subscriber = Subscriber(tally, params.parser)
    await subscriber.connect(HOST, server.port, path, server.token)
    async with publisher(params.publish, server, params.topic) as publish:
        await publish({"seq": -1, "t": time.time()})
        deadline = time.monotonic() + 10
        while tally.warmups == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the warm-up event never arrived")
            await asyncio.sleep(0.01)
    await subscriber.close()


async def measure(server: RoyalServer, params: Params) -> dict[str, Any]:
    pid = server.worker_pid
    path = f"/streams/{params.topic}"
    await warm_up(server, params, path)
    await asyncio.sleep(0.5)
    counters_before = await server.stream_counters()
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
        writes_start, comments_start = sum(s.writes for s in subscribers), tally.comments
        window = Window(server)
        publish_seconds = await publish_events(
            publish, params.events, params.rate, params.payload_bytes
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.all_complete.wait(), params.drain_seconds)
        window.close()
        writes = sum(s.writes for s in subscribers) - writes_start
        comments = tally.comments - comments_start
    rss_end = machine.rss_bytes(pid)
    counters_after = await server.stream_counters()
    await asyncio.to_thread(profiler.wait)
    for start in range(0, len(subscribers), 1000):
        await asyncio.gather(*(s.close() for s in subscribers[start : start + 1000]))

    deliveries, server_cpu = tally.received, window.server_cpu
    latency_points = ("p50", "p90", "p99", "p999", "max", "mean")
    return {
        **delivery_figures(tally, window, publish_seconds, params.events, params.subscribers),
        "stream_writes": writes,
        "heartbeat_comments": comments,
        "events_per_write": deliveries / writes if writes else None,
        "cpu_us_per_write": server_cpu / writes * 1e6 if writes else None,
        "server_idle_cpu_per_second": idle_cpu_per_second,
        "latency_ms": summary(tally.latencies, latency_points),
        # Per event: when its first and its last subscriber got it. A late first means a slow
        # dispatch (polling, a pause); a wide gap means a slow sweep over the subscribers.
        "first_subscriber_latency_ms": summary(tally.first, latency_points),
        "last_subscriber_latency_ms": summary(tally.last, latency_points),
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
            key: counters_after[key] - counters_before[key] for key in counters_after
        },
        "profiled": params.profile is not None,
    }


def run(params: Params) -> harness.Report:
    return harness.run(
        "sse_fanout",
        params,
        {"ROYAL_STREAM_POLL_SECONDS": str(params.poll_seconds)},
        descriptors=params.subscribers + 1024,
        drive=lambda server: measure(server, params),
        derived={"events": params.events},
    )


def failures(report: harness.Report) -> list[str]:
    """What makes the run a failure: any event lost, duplicated or out of order."""
    results = report["results"]
    problems = [
        f"{results[key]} {key.replace('_', ' ')}"
        for key in ("lost", "duplicates", "reordered", "id_regressions", "other_events")
        if results[key]
    ]
    return problems


def format_table(report: harness.Report) -> str:
    p, r = report["parameters"], report["results"]
    lat = r["latency_ms"]
    first, last = r["first_subscriber_latency_ms"], r["last_subscriber_latency_ms"]
    saturated = None
    if r["server_cpu_utilisation"] > 0.9:
        saturated = (
            "the server used over 90% of its core: saturated, it joined backlogs into fewer "
            "writes, so µs per delivery reflects the load offered; compare µs per write"
        )
    run = (
        f"{p['subscribers']:,} subscribers x {p['rate']:g} events/s x {p['seconds']:g} s "
        f"= {p['events']} events, publish={p['publish']}, poll={p['poll_seconds']:g} s, "
        f"parser={p['parser']}, payload~{p['payload_bytes']} B"
    )
    rows = [
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
        ("deliveries / CPU-s", num(r["deliveries_per_cpu_second"], ",.0f")),
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
            f"first subscriber p50 {num(first['p50'], '.1f')} max {num(first['max'], '.1f')}; "
            f"last subscriber p50 {num(last['p50'], '.1f')} max {num(last['max'], '.1f')}",
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
    ]
    return render(report, run, rows, caveats(r, saturated))


def main(args: argparse.Namespace) -> int:
    return harness.main(args, Params, SMOKE, run, format_table, failures)


def delivery_figures(
    tally: Tally, window: Window, publish_seconds: float, events: int, subscribers: int
) -> dict[str, Any]:
    """What every fan-out run reports (SSE here, WebSocket in ``streams``), by one name."""
    expected, deliveries = events * subscribers, tally.received
    server_cpu, client_cpu = window.server_cpu, window.client_cpu
    return {
        "events_published": events,
        "publish_seconds": publish_seconds,
        # The last event is due (events - 1) / rate after the first one.
        "achieved_rate": (events - 1) / publish_seconds if publish_seconds else None,
        "window_seconds": window.seconds,
        "window_started_at": window.started_at,
        "expected_deliveries": expected,
        "deliveries": deliveries,
        "lost": expected - deliveries,
        "duplicates": tally.duplicates,
        "reordered": tally.reordered,
        "id_regressions": tally.id_regressions,
        "other_events": tally.other_events,
        "streams_closed_early": tally.closed_early,
        "subscribers_complete": tally.complete,
        "server_cpu_seconds": server_cpu,
        "server_cpu_utilisation": server_cpu / window.seconds,
        "deliveries_per_cpu_second": deliveries / server_cpu if server_cpu else None,
        "cpu_us_per_delivery": server_cpu / deliveries * 1e6 if deliveries else None,
        "client_cpu_seconds": client_cpu,
        "client_cpu_utilisation": client_cpu / window.seconds,
        "client_cpu_us_per_delivery": client_cpu / deliveries * 1e6 if deliveries else None,
        **window.background(),
    }
