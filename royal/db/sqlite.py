"""A `databases` SQLite backend with long-lived connections and one writer.

`databases` 0.9 opens a fresh aiosqlite connection (and thread) for every query and starts
transactions with a plain BEGIN, so concurrent read-then-write transactions die with
"database is locked". This backend keeps a few reader connections open for the life of the
process and routes every write through a single writer connection:

- statements outside a transaction go to a reader when they are plain reads (SELECT, VALUES,
  EXPLAIN, read-only PRAGMA) and to the writer otherwise; readers run with ``query_only`` so a
  misrouted write fails loudly instead of fighting for the lock;
- a root transaction holds the writer from BEGIN IMMEDIATE to COMMIT, so the write lock is
  taken up front (other processes wait on busy_timeout) and transactions in this process queue
  on an asyncio lock instead of spinning in SQLite's busy handler;
- every connection runs with WAL, busy_timeout and foreign_keys on.

An in-memory database gets no readers: each SQLite connection would see its own empty database.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiosqlite
from databases.backends import sqlite as base
from databases.core import DatabaseURL
from sqlalchemy.sql import ClauseElement, CompoundSelect, Select, TextClause

from royal.db.statements import BoundSQL, Statements

T = TypeVar("T")

_STATEMENTS = Statements()

_READ_ONLY = re.compile(r"^\s*(?:SELECT|VALUES|EXPLAIN|PRAGMA\s+\w+\s*(?:;|$))", re.IGNORECASE)


def is_read_only(sql: str) -> bool:
    """Whether a statement can run on a query_only reader connection."""
    return bool(_READ_ONLY.match(_strip_leading_comments(sql)))


def _reads_only(query: ClauseElement | BoundSQL) -> bool:
    if isinstance(query, BoundSQL):
        return is_read_only(query.sql)
    if isinstance(query, TextClause):
        return is_read_only(query.text)
    return isinstance(query, Select | CompoundSelect)


def _strip_leading_comments(sql: str) -> str:
    while True:
        sql = sql.lstrip()
        if sql.startswith("--"):
            sql = sql.partition("\n")[2]
        elif sql.startswith("/*"):
            sql = sql.partition("*/")[2]
        else:
            return sql


class ConnectionPool:
    """One writer and up to ``readers`` reader connections, all opened lazily and kept open."""

    def __init__(self, path: str, *, readers: int, busy_timeout_ms: int, uri: bool) -> None:
        self._path = path
        self._uri = uri
        self._busy_timeout_ms = busy_timeout_ms
        self._max_readers = 0 if _is_memory(path) else readers
        self._idle_readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._reader_count = 0
        self._all: list[aiosqlite.Connection] = []
        self._writer: aiosqlite.Connection | None = None
        self._writer_lock = asyncio.Lock()
        self._open_lock = asyncio.Lock()

    async def _open(self, *, query_only: bool) -> aiosqlite.Connection:
        pending = aiosqlite.connect(self._path, isolation_level=None, uri=self._uri)
        try:
            connection = await pending
        except BaseException:
            # aiosqlite stops its thread without waiting; wait here, or the thread reports
            # to an event loop that may be closed by then.
            thread = getattr(pending, "_thread", None)
            if thread is not None:
                await asyncio.to_thread(thread.join, 5)
            raise
        try:
            await connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            await connection.execute("PRAGMA foreign_keys = ON")
            if not _is_memory(self._path):
                await _enable_wal(connection, self._busy_timeout_ms / 1000)
                await connection.execute("PRAGMA synchronous = NORMAL")
            if query_only:
                await connection.execute("PRAGMA query_only = ON")
        except BaseException:
            await connection.close()
            raise
        self._all.append(connection)
        return connection

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._writer_lock:
            if self._writer is None:
                self._writer = await self._open(query_only=False)
            elif self._writer.in_transaction:
                # A previous holder was cancelled between BEGIN and COMMIT/ROLLBACK.
                await self._writer.rollback()
            yield self._writer

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._max_readers == 0:
            async with self.writer() as connection:
                yield connection
            return
        connection = await self._take_reader()
        try:
            yield connection
        finally:
            self._idle_readers.put_nowait(connection)

    async def _take_reader(self) -> aiosqlite.Connection:
        if self._idle_readers.empty():
            async with self._open_lock:
                if self._idle_readers.empty() and self._reader_count < self._max_readers:
                    connection = await self._open(query_only=True)
                    self._reader_count += 1
                    return connection
        return await self._idle_readers.get()

    async def close(self) -> None:
        connections, self._all = self._all, []
        for connection in connections:
            await connection.close()
        self._writer = None
        self._idle_readers = asyncio.Queue()
        self._reader_count = 0


async def _enable_wal(connection: aiosqlite.Connection, patience: float) -> None:
    """Switch the file to WAL (it stays so). The switch needs the file to itself and SQLite's
    busy handler does not wait for that, so two processes opening a new file at once would see
    "database is locked": retry for as long as busy_timeout would have waited."""
    deadline = time.monotonic() + patience
    while True:
        try:
            await connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


def _is_memory(path: str) -> bool:
    return path == ":memory:" or path == "" or "mode=memory" in path


class SQLiteBackend(base.SQLiteBackend):
    def __init__(
        self,
        database_url: DatabaseURL | str,
        *,
        readers: int = 4,
        busy_timeout_ms: int = 5000,
        **options: Any,
    ) -> None:
        super().__init__(database_url, **options)
        url = DatabaseURL(database_url)
        path, uri = url.database, False
        if url.options:
            path, uri = f"file:{path}?" + "&".join(f"{k}={v}" for k, v in url.options.items()), True
        self._royal_pool = ConnectionPool(
            path, readers=readers, busy_timeout_ms=busy_timeout_ms, uri=uri
        )

    async def connect(self) -> None:
        """Connections open on first use, so a broken path shows in /readyz, not as a crash."""

    async def disconnect(self) -> None:
        await self._royal_pool.close()
        await super().disconnect()

    def connection(self) -> SQLiteConnection:
        return SQLiteConnection(self._royal_pool, self._dialect)


class SQLiteConnection(base.SQLiteConnection):
    """Borrows a pooled connection per statement, or holds the writer for a transaction."""

    def __init__(self, pool: ConnectionPool, dialect: Any) -> None:
        super().__init__(pool, dialect)  # type: ignore[arg-type]
        self._royal_pool = pool
        self._writer_lease: Any = None

    async def acquire(self) -> None:
        """Nothing to take yet: the first statement or transaction decides which connection."""

    async def release(self) -> None:
        await self.unbind_writer()

    async def bind_writer(self) -> aiosqlite.Connection:
        lease = self._royal_pool.writer()
        self._connection = await lease.__aenter__()
        self._writer_lease = lease
        return self._connection

    async def unbind_writer(self) -> None:
        lease, self._writer_lease = self._writer_lease, None
        self._connection = None
        if lease is not None:
            await lease.__aexit__(None, None, None)

    async def _run(
        self, query: ClauseElement, method: Callable[[ClauseElement], Awaitable[T]]
    ) -> T:
        if self._connection is not None:
            return await method(query)
        lease = self._royal_pool.reader() if _reads_only(query) else self._royal_pool.writer()
        async with lease as connection:
            self._connection = connection
            try:
                return await method(query)
            finally:
                self._connection = None

    def _compile(self, query: ClauseElement) -> Any:  # (sql, args, result map, context)
        """databases' compile, remembered per SQL text and parameter types (statements.py)."""
        return _STATEMENTS.compile(query, super()._compile, self._dialect, positional=True)

    async def fetch_all(self, query: ClauseElement) -> list[Any]:
        return await self._run(query, super().fetch_all)

    async def fetch_one(self, query: ClauseElement) -> Any:
        return await self._run(query, super().fetch_one)

    async def execute(self, query: ClauseElement) -> Any:
        return await self._run(query, super().execute)

    async def execute_many(self, queries: list[ClauseElement]) -> None:
        if self._connection is not None:
            await super().execute_many(queries)
            return
        async with self._royal_pool.writer() as connection:
            self._connection = connection
            try:
                await super().execute_many(queries)
            finally:
                self._connection = None

    def transaction(self) -> SQLiteTransaction:
        return SQLiteTransaction(self)


class SQLiteTransaction(base.SQLiteTransaction):
    """Root transactions hold the writer and start with BEGIN IMMEDIATE."""

    _connection: SQLiteConnection

    async def start(self, is_root: bool, extra_options: dict[Any, Any]) -> None:
        if not is_root:
            await super().start(is_root, extra_options)
            return
        self._is_root = True
        connection = await self._connection.bind_writer()
        try:
            await connection.execute("BEGIN IMMEDIATE")
        except BaseException:
            await self._connection.unbind_writer()
            raise

    async def commit(self) -> None:
        if not self._is_root:
            await super().commit()
            return
        try:
            await super().commit()
        except BaseException:
            await self._rollback_quietly()
            raise
        finally:
            await self._connection.unbind_writer()

    async def rollback(self) -> None:
        if not self._is_root:
            await super().rollback()
            return
        try:
            await super().rollback()
        finally:
            await self._connection.unbind_writer()

    async def _rollback_quietly(self) -> None:
        raw = self._connection._connection
        if raw is not None and raw.in_transaction:
            await raw.rollback()
