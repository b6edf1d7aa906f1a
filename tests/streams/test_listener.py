"""The LISTEN connection against a real PostgreSQL: notifications, kills, outages, shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from royal.streams.listener import PostgresListener

pytestmark = pytest.mark.postgres

CHANNEL = "royal_test_events"
FAST: dict[str, float] = {
    "fallback_poll_seconds": 60.0,  # tests that want ticks ask for them
    "backoff_initial": 0.02,
    "backoff_max": 0.1,
    "connect_timeout": 1.0,
}
Start = Callable[..., tuple[PostgresListener, list[int | None], "asyncio.Task[None]"]]


async def eventually(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def notify(dsn: str, *payloads: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for payload in payloads:  # one statement, one transaction, one notification each
            await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
    finally:
        await connection.close()


async def fetchval(dsn: str, sql: str, *args: Any) -> Any:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


@pytest.fixture(name="start")
async def _start(postgres_url: str) -> AsyncIterator[Start]:
    """Run listeners in tasks (on the test database unless told); cancel them afterwards."""
    tasks: list[asyncio.Task[None]] = []

    def start(
        dsn: str = postgres_url, wake: Callable[[int | None], None] | None = None, **options: float
    ) -> tuple[PostgresListener, list[int | None], asyncio.Task[None]]:
        wakes: list[int | None] = []
        listener = PostgresListener(dsn, CHANNEL, wake or wakes.append, **{**FAST, **options})
        tasks.append(asyncio.create_task(listener.run()))
        return listener, wakes, tasks[-1]

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)


async def test_notifications_wake_with_their_ids_in_order(start: Start, postgres_url: str) -> None:
    listener, wakes, _ = start()
    await eventually(lambda: listener.connected)
    assert wakes == [None]  # connected: re-read the log from the cursor

    await notify(postgres_url, "1", "2", "not-an-id", "3")
    await eventually(lambda: len(wakes) == 5)
    assert wakes == [None, 1, 2, None, 3]
    assert listener.notifications == 4
    assert listener.status() == {"connected": True, "reconnects": 0, "last_error": None}


async def test_fallback_ticks_wake_and_keep_the_connection(start: Start) -> None:
    listener, wakes, _ = start(fallback_poll_seconds=0.05)
    await eventually(lambda: wakes.count(None) >= 4)
    assert listener.connected
    assert listener.reconnects == 0


async def test_a_failing_wake_callback_does_not_stop_the_listener(
    start: Start, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    wakes: list[int | None] = []

    def wake(event_id: int | None) -> None:
        if event_id is None:
            raise RuntimeError("dispatcher bug")
        wakes.append(event_id)

    listener, _, _ = start(wake=wake)
    await eventually(lambda: listener.connected)
    await notify(postgres_url, "7")
    await eventually(lambda: wakes == [7])
    assert "wake callback failed" in caplog.text


async def test_survives_repeated_pg_terminate_backend(
    start: Start, postgres_url: str, postgres_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="royal.streams.listener")
    listener, wakes, _ = start()
    await eventually(lambda: listener.connected)
    for kill in range(1, 4):
        old_pid = listener.backend_pid
        wakes.clear()
        began = time.perf_counter()
        assert await fetchval(postgres_server, "SELECT pg_terminate_backend($1)", old_pid)
        await eventually(lambda: listener.connected and listener.backend_pid != old_pid)  # noqa: B023
        print(f"kill {kill}: listening again after {time.perf_counter() - began:.3f} s")
        assert listener.reconnects == kill
        assert listener.last_error is not None
        assert wakes == [None]  # reconnected: re-read the log, missed notifications are lost

        await notify(postgres_url, str(kill))
        await eventually(lambda: wakes == [None, kill])  # noqa: B023
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert (len(warnings), len(infos)) == (3, 3)  # one of each per outage


async def test_unreachable_server_keeps_retrying_and_cancels_promptly(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    listener, wakes, task = start("postgresql://postgres@127.0.0.1:9/royal")
    await eventually(lambda: listener.connect_attempts >= 4)
    assert not listener.connected
    assert listener.backend_pid is None
    assert listener.last_error is not None and listener.last_error
    assert listener.reconnects == 0  # it never had a connection to lose
    assert wakes == []
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1

    began = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert time.perf_counter() - began < 0.5


async def test_cancel_closes_the_connection(start: Start, postgres_server: str) -> None:
    listener, _, task = start()
    await eventually(lambda: listener.connected)
    pid = listener.backend_pid
    assert await fetchval(
        postgres_server, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
    )

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 3)
    assert not listener.connected

    async def gone() -> bool:
        sql = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
        return await fetchval(postgres_server, sql, pid) == 0

    async def until_gone() -> None:
        while not await gone():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(until_gone(), 2)
    assert asyncio.all_tasks() == {asyncio.current_task()}


class BlackholeProxy:
    """A TCP proxy to PostgreSQL that can go silent: a connection dropped without a FIN/RST."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.silent: list[bool] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    def go_silent(self) -> None:
        """Stop forwarding on every open connection, but keep the sockets open."""
        self.silent = [True] * len(self.silent)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._pipe(reader, writer))
        self.tasks.add(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]
        index = len(self.silent)
        self.silent.append(False)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                if not self.silent[index]:
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def test_keep_alive_detects_a_silently_dropped_connection(
    start: Start, postgres_url: str
) -> None:
    url = urlsplit(postgres_url)
    proxy = BlackholeProxy(url.hostname or "127.0.0.1", url.port or 5432)
    async with proxy as port:
        dsn = url._replace(netloc=f"{url.username}@127.0.0.1:{port}").geturl()
        listener, wakes, task = start(dsn, fallback_poll_seconds=0.1, connect_timeout=0.3)
        await eventually(lambda: listener.connected)
        old_pid = listener.backend_pid

        began = time.perf_counter()
        proxy.go_silent()  # no termination callback fires: only the keep-alive can notice
        await eventually(lambda: listener.reconnects == 1 and listener.connected)
        print(f"silent drop: listening again after {time.perf_counter() - began:.3f} s")
        assert (listener.last_error or "").startswith("KeepAliveFailed")
        assert listener.backend_pid != old_pid

        wakes.clear()
        await notify(postgres_url, "42")
        await eventually(lambda: 42 in wakes)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
