"""Royal on its SQLite default with two workers under a mixed load: 50 writers and 200 readers
for LOAD_SECONDS, over real sockets. Every answer is a 2xx, no worker ever reports "database is
locked", and every acknowledged write can be read back through the API.

SQLite has one writer at a time across both processes; each worker keeps one write connection
and waits up to ROYAL_SQLITE_BUSY_TIMEOUT_MS for the other's lock. ``python -m bench soak``
runs the same load (tests/reliability/http_load.py) for 60 s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.mixed_load import run_load, unreadable
from tests.conftest import LiveRoyal

StartRoyal = Callable[..., Awaitable[LiveRoyal]]

LOAD_SECONDS = 10.0
WRITERS = 50
READERS = 200


async def test_two_workers_on_sqlite_lose_no_write_and_never_lock(
    live_royal: StartRoyal,
) -> None:
    live = await live_royal(workers=2)
    result = await run_load(
        live.url, live.headers("operator"), duration=LOAD_SECONDS, writers=WRITERS, readers=READERS
    )
    print(f"\n{result.summary()}")
    missing = await unreadable(live.url, live.headers("operator"), result)
    output = live.server.output()

    errors, failures = result.errors, result.failures
    assert not errors and not failures, (errors, failures)
    assert "database is locked" not in output.lower(), output[-3000:]
    assert "Traceback" not in output and "starting another" not in output, output[-3000:]
    writes = len(result.alerts) + len(result.published) + len(result.events)
    assert writes >= WRITERS * 3, f"only {writes} writes: the load did not run"
    assert missing == {"alerts": [], "events": [], "published": []}, missing
    print(
        f"{len(result.alerts)} alerts, {len(result.published)} stream events and "
        f"{len(result.events)} events written, every one read back"
    )
