"""SIGTERM drains: streams end with a resume hint, in-flight requests finish, the exit is
bounded by Hypercorn's graceful_timeout, and clients resume after a restart with 0 lost.

CI also runs this file on Python 3.12 (.ci/run): there Hypercorn alone waits on every open
connection before its graceful timeout even starts (hypercorn#308), so a request that never
ends would hold a worker forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from bench.reliability_workloads import publish_through_a_disruption
from royal.testing import SSEClient, WSClient
from tests.conftest import LiveRoyal
from tests.fanout import TOPIC

StartRoyal = Callable[..., Awaitable[LiveRoyal]]
SLOW_APP = "tests.reliability.slow_app:create_app()"
REPOSITORY = Path(__file__).resolve().parents[2]


def stream_client() -> httpx.AsyncClient:
    """One client for many streams: a connection each, none of them pooled away."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return httpx.AsyncClient(timeout=httpx.Timeout(10, read=None), limits=limits)


async def test_sigterm_ends_hundreds_of_streams_and_lets_a_request_finish(
    live_royal: StartRoyal,
) -> None:
    live = await live_royal(workers=2, app=SLOW_APP)
    token = live.tokens["viewer"]
    async with stream_client() as http:
        streams = [
            SSEClient(f"{live.url}/streams/{TOPIC}", token=token, client=http) for _ in range(200)
        ]
        await asyncio.gather(*(stream.open() for stream in streams))
        sockets = [WSClient(live.ws_url, token=token) for _ in range(50)]
        await asyncio.gather(*(socket.__aenter__() for socket in sockets))
        for socket in sockets:
            assert (await socket.subscribe([TOPIC]))["type"] == "subscribed"
        await live.publish(TOPIC, {"n": 0})  # every stream is live: each gets it
        await asyncio.gather(*(stream.read(1) for stream in streams))
        await asyncio.gather(*(socket.events(1) for socket in sockets))

        in_flight = asyncio.create_task(http.get(f"{live.url}/slow", params={"seconds": 2}))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        stopping = asyncio.get_running_loop().run_in_executor(None, live.server.stop)
        await asyncio.gather(*(stream.read_until_closed(timeout=10) for stream in streams))
        assert {stream.parser.retry for stream in streams} == {1000}  # come back soon
        for socket in sockets:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await socket.receive(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        response = await in_flight
        assert response.status_code == 200 and response.json() == {"slept": 2.0}
        assert await stopping == 0
        elapsed = time.monotonic() - started
        for stream in streams:
            await stream.close()
    assert elapsed < 6, f"the drain took {elapsed:.1f} s"


async def test_a_request_longer_than_the_graceful_timeout_is_cut_at_the_bound(
    live_royal: StartRoyal, tmp_path: Path
) -> None:
    (tmp_path / "hypercorn.toml").write_text("graceful_timeout = 2\n")
    live = await live_royal(app=SLOW_APP, cwd=tmp_path, env={"PYTHONPATH": str(REPOSITORY)})
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        in_flight = asyncio.create_task(http.get("/slow", params={"seconds": 60}))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        exit_code = await asyncio.to_thread(live.server.stop)
        elapsed = time.monotonic() - started
        response = await in_flight  # cut at the bound: Hypercorn's bare 500, then the close
    assert response.status_code == 500 and response.headers["connection"] == "close"
    assert exit_code == 0  # the worker ended it, not the supervisor's kill
    assert 1 <= elapsed < 4, f"exit after {elapsed:.1f} s with graceful_timeout = 2"


async def test_clients_resume_after_a_restart_with_nothing_lost(live_royal: StartRoyal) -> None:
    live = await live_royal(workers=2)

    async def restart() -> None:
        await asyncio.to_thread(live.server.restart)

    run = await publish_through_a_disruption(
        live.url, live.tokens["viewer"], live.headers(), restart, readers=20, events=300
    )
    assert run.complete, "not every reader got every event"
    assert len(run.published) == 300
    assert run.resumes >= 20  # every reader was cut and came back
    assert run.in_order, "out of order or duplicated"
    print(f"\n300 events across a restart, 20 readers, {run.resumes} resumes")
