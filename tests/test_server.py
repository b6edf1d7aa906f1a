"""`royal serve`'s supervisor: SIGTERM drains streams first; a crashed worker is replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from royal.testing import SSEClient, WSClient
from tests.conftest import LiveRoyal


def worker_pids(live: LiveRoyal) -> list[int]:
    return live.server.worker_pids()


async def test_sigterm_ends_streams_with_a_retry_hint_and_exits_quickly(
    live_royal: Callable[..., Awaitable[LiveRoyal]],
) -> None:
    live = await live_royal()
    sse = await SSEClient(f"{live.url}/streams/alerts", token=live.tokens["viewer"]).open()
    ws = await WSClient(live.ws_url, token=live.tokens["viewer"]).__aenter__()
    assert (await ws.subscribe(["jobs"]))["type"] == "subscribed"
    started = time.monotonic()
    stopping = asyncio.get_running_loop().run_in_executor(None, live.server.stop)
    await sse.read_until_closed(timeout=5)
    assert sse.parser.retry == 1000  # the drain's hint: come back (to another worker) soon
    with pytest.raises(ConnectionClosed) as closed:
        await ws.receive(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert await stopping == 0
    assert time.monotonic() - started < 5  # not the 10 s graceful timeout
    await sse.close()


async def test_a_killed_worker_is_replaced(live_royal: Callable[..., Awaitable[LiveRoyal]]) -> None:
    live = await live_royal(workers=2)
    before = worker_pids(live)
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = worker_pids(live)
        if len(now) == 2 and before[0] not in now:
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail(f"no replacement worker: {worker_pids(live)}")
    async with httpx.AsyncClient(base_url=live.url, timeout=5) as http:
        statuses = {(await http.get("/readyz")).status_code for _ in range(10)}
    assert statuses == {200}
