"""PostgreSQL goes away under load and comes back: Royal answers 503, keeps streams, loses nothing.

Royal's two workers reach PostgreSQL through a FaultProxy; cutting it closes every connection
and refuses new ones, which is what a stopped server looks like to its clients. Throughout,
a load of reads and publishes runs, and SSE and WebSocket subscribers stay connected.
The full-scale version (a real ``pg_ctlcluster stop`` for 30 s) is ``python -m bench soak``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from urllib.parse import urlsplit

import httpx
import pytest

from bench.reliability_workloads import RequestLoad
from royal.faults import FaultProxy
from tests.conftest import LiveRoyal
from tests.fanout import (
    cancel,
    ended,
    eventually,
    publisher,
    sse_subscriber,
    warm_up,
    ws_subscriber,
)

pytestmark = pytest.mark.postgres

OUTAGE_SECONDS = 6.0
ANSWER_WITHIN = 5.0  # seconds: a 503 during the outage, a success after it


async def test_postgres_stopped_under_load(
    postgres_url: str, live_royal: Callable[..., Awaitable[LiveRoyal]]
) -> None:
    target = urlsplit(postgres_url)
    with FaultProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        live = await live_royal(workers=2, database_url=proxy.url_for(postgres_url))
        async with AsyncExitStack() as stack:
            subscribers = [
                await sse_subscriber(stack, live, "sse-1", 10**9),
                await sse_subscriber(stack, live, "sse-2", 10**9),
                await ws_subscriber(stack, live, "ws", 10**9),
            ]
            warmup = await stack.enter_async_context(publisher(fresh_connections=False))
            await warm_up(subscribers, warmup, [live])
            load = RequestLoad(live.url, live.headers())
            running = asyncio.create_task(load.run())
            stack.push_async_callback(cancel, running)

            await asyncio.sleep(1.5)
            cut_at = time.monotonic()
            await asyncio.to_thread(proxy.cut)
            async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
                await asyncio.sleep(OUTAGE_SECONDS / 2)
                ready_during = await http.get("/readyz")
                await asyncio.sleep(OUTAGE_SECONDS / 2)
                restored_at = time.monotonic()
                await asyncio.to_thread(proxy.restore)

                async def answering_again() -> bool:
                    return all(
                        load.first(kind, restored_at, success=True) for kind in ("read", "publish")
                    )

                await eventually(answering_again, timeout=15)
                await asyncio.sleep(1.0)  # a little more traffic after the recovery
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)

                async def ready() -> bool:
                    return (await http.get("/readyz")).status_code == 200

                await eventually(ready, timeout=10)

            # Every event that got its 201 reaches every subscriber, once, in order.
            def missing() -> dict[str, list[int]]:
                wanted = set(load.published)
                return {s.name: sorted(wanted - {a[1] for a in s.ticks}) for s in subscribers}

            async def all_delivered() -> bool:
                return not any(missing().values())

            await eventually(
                all_delivered,
                timeout=15,
                explain=lambda: (
                    f"missing {missing()}; {ended(subscribers)}; "
                    f"server log ends: {live.server.output()[-3000:]}"
                ),
            )
            for subscriber in subscribers:
                assert subscriber.task is not None and not subscriber.task.done(), subscriber.name
                ids = [arrival[1] for arrival in subscriber.ticks]
                assert ids == sorted(set(ids)), f"{subscriber.name}: out of order or duplicated"

    statuses = {(o.kind, o.status) for o in load.outcomes}
    assert statuses <= {("read", 200), ("read", 503), ("publish", 201), ("publish", 503)}
    failures = [o for o in load.outcomes if o.status == 503]
    assert failures, "the outage was never noticed"
    for outcome in failures:
        assert outcome.retry_after is not None and int(outcome.retry_after) > 0
        assert outcome.body["code"] == "database_unavailable"
        # A request under way when the cut came may fail too: it ended after the cut.
        assert cut_at <= outcome.finished and outcome.started <= restored_at + ANSWER_WITHIN
    assert max(o.finished - o.started for o in load.outcomes) < ANSWER_WITHIN
    first_failure = load.first("read", cut_at, success=False)
    assert first_failure is not None and first_failure.finished - cut_at < ANSWER_WITHIN
    for kind in ("read", "publish"):
        back = load.first(kind, restored_at, success=True)
        assert back is not None and back.finished - restored_at < ANSWER_WITHIN, kind
    assert ready_during.status_code == 503
    assert len(load.published) > 20
    output = live.server.output()
    assert "Unhandled error" not in output and "Traceback" not in output
    assert "starting another" not in output  # no worker died
    print(
        f"\n{len(load.outcomes)} requests, {len(failures)} answered 503 during a "
        f"{OUTAGE_SECONDS:.0f} s outage; {len(load.published)} events published, all delivered"
    )
