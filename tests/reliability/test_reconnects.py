"""Thousands of SSE reconnects with Last-Event-ID across workers: nothing lost or duplicated,
and every worker's tasks and file descriptors back where they were (RSS close to it).

CI runs it small (2 workers, 600 reconnects); ``python -m bench soak`` runs the same workload
with 4 workers and 10,000 reconnects.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

from bench.reliability_workloads import reconnect_storm, worker_stats
from tests.conftest import LiveRoyal

WORKERS = 2
CLIENTS = 30
RECONNECTS = 600


async def test_reconnects_lose_nothing_and_leak_nothing(
    live_royal: Callable[..., Awaitable[LiveRoyal]],
) -> None:
    live = await live_royal(workers=WORKERS)
    viewer = live.headers("viewer")
    storm = functools.partial(
        reconnect_storm, live.url, live.tokens["viewer"], live.headers(), clients=CLIENTS
    )
    await storm(reconnects=CLIENTS)  # warm up: the database's reader connections open lazily
    before = await worker_stats(live.url, viewer, WORKERS)
    assert len(before) == WORKERS
    result = await storm(reconnects=RECONNECTS)
    assert result.reconnects >= RECONNECTS
    assert len(result.published) > 50
    assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0)

    # Closed connections are gone within a few seconds (Hypercorn closes its side at once).
    deadline = time.monotonic() + 10
    while True:
        after = await worker_stats(live.url, viewer, WORKERS)
        leaks = {
            pid: (before[pid]["process"], stats["process"], stats["counters"]["sse_open"])
            for pid, stats in after.items()
            if pid not in before
            or stats["counters"]["sse_open"] != 0
            or stats["process"]["tasks"] > before[pid]["process"]["tasks"]
            or stats["process"]["open_fds"] > before[pid]["process"]["open_fds"]
        }
        if not leaks or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert not leaks, f"not back to the baseline (before, after, open streams): {leaks}"
    print(
        f"\n{result.reconnects} reconnects, {len(result.published)} events x {CLIENTS} clients "
        f"in {result.seconds:.1f} s; per worker before/after: "
        + "; ".join(
            f"tasks {before[pid]['process']['tasks']}->{s['process']['tasks']}, "
            f"fds {before[pid]['process']['open_fds']}->{s['process']['open_fds']}, "
            f"rss {before[pid]['process']['rss_bytes'] >> 20}->"
            f"{s['process']['rss_bytes'] >> 20} MiB"
            for pid, s in after.items()
        )
    )
