"""The FaultProxy the database-outage tests rely on: a cut closes and refuses, a restore heals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from royal.faults import FaultProxy


@pytest.fixture(name="echo_port")
async def _echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def round_trip(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        return await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    finally:
        writer.close()


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the proxy ended this connection (an abort may arrive as a reset)."""
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True


async def test_cut_closes_open_connections_and_refuses_new_ones(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        assert await round_trip(proxy.port) == b"ping"
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"

        await asyncio.to_thread(proxy.cut)
        assert await closed(reader)  # the open one too
        writer.close()
        with pytest.raises(ConnectionError):
            await round_trip(proxy.port)

        await asyncio.to_thread(proxy.restore)
        assert await round_trip(proxy.port, b"back") == b"back"
        assert proxy.connections_made == 3


async def test_sever_closes_open_connections_but_accepts_new_ones(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        await asyncio.to_thread(proxy.sever)
        assert await closed(reader)
        writer.close()
        assert await round_trip(proxy.port) == b"ping"


def test_url_for_points_a_database_url_at_the_proxy() -> None:
    with FaultProxy("127.0.0.1", 5432) as proxy:
        url = proxy.url_for("postgresql://postgres:secret@db.internal:5432/royal")
        assert url == f"postgresql://postgres:secret@127.0.0.1:{proxy.port}/royal"
