"""Rows for the FastAPI peer: long-lived aiosqlite connections, or an asyncpg pool.

Not the `databases` package: its SQLite backend (0.9) opens a new aiosqlite connection, and
with it a thread, for every query. Royal replaces that backend with long-lived connections
(royal/db/sqlite.py), so the peer gets them too, straight from aiosqlite. On PostgreSQL,
asyncpg's own pool is what `databases` wraps, minus SQLAlchemy's query compilation.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import aiosqlite
import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
from pydantic import BaseModel

from bench.peers.config import PeerConfig

SQLITE_CONNECTIONS = 4  # as many as Royal's SQLite readers


class Row(BaseModel):
    id: int
    name: str
    value: float


class Rows(Protocol):
    async def select_row(self, row_id: int) -> Row | None: ...

    async def close(self) -> None: ...


class SQLiteRows:
    """A few aiosqlite connections (a thread each), lent to one query at a time."""

    def __init__(self, connections: list[aiosqlite.Connection]) -> None:
        self._connections = connections
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for connection in connections:
            self._idle.put_nowait(connection)

    @classmethod
    async def open(cls, path: str, size: int = SQLITE_CONNECTIONS) -> SQLiteRows:
        return cls([await aiosqlite.connect(path) for _ in range(size)])

    async def select_row(self, row_id: int) -> Row | None:
        connection = await self._idle.get()
        try:
            # One hop to the connection's thread (execute plus fetchone would be two).
            records = await connection.execute_fetchall(
                "SELECT id, name, value FROM items WHERE id = ?", (row_id,)
            )
        finally:
            self._idle.put_nowait(connection)
        for id, name, value in records:
            return Row(id=id, name=name, value=value)
        return None

    async def close(self) -> None:
        for connection in self._connections:
            await connection.close()


class PostgresRows:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: str, size: int) -> PostgresRows:
        return cls(await asyncpg.create_pool(url, min_size=size, max_size=size))

    async def select_row(self, row_id: int) -> Row | None:
        record = await self.pool.fetchrow("SELECT id, name, value FROM items WHERE id = $1", row_id)
        return None if record is None else Row(**record)

    async def close(self) -> None:
        await self.pool.close()


async def open_rows(config: PeerConfig) -> Rows:
    if config.postgres_url:
        return await PostgresRows.open(config.postgres_url, config.pool_size)
    return await SQLiteRows.open(config.sqlite_path)
