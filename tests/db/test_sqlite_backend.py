"""Royal's SQLite backend: long-lived connections, one writer, no "database is locked"."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
from pathlib import Path

import pytest

from royal.db import Database, connect_database
from royal.db.sqlite import is_read_only


@pytest.fixture(name="counter_db")
async def _counter_db(tmp_path: Path) -> Database:
    database = connect_database(f"sqlite:///{tmp_path / 'c.db'}", SQLITE_BUSY_TIMEOUT_MS=10000)
    await database.connect()
    await database.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    await database.execute("INSERT INTO counter (id, n) VALUES (1, 0)")
    yield database
    await database.disconnect()


async def read_then_write(database: Database) -> None:
    async with database.transaction():
        n = await database.fetch_val("SELECT n FROM counter WHERE id = 1")
        await asyncio.sleep(0)  # let the other tasks run between the read and the write
        await database.execute("UPDATE counter SET n = :n WHERE id = 1", {"n": n + 1})


async def test_200_concurrent_read_then_write_transactions(counter_db: Database) -> None:
    results = await asyncio.gather(
        *(read_then_write(counter_db) for _ in range(200)), return_exceptions=True
    )
    assert [r for r in results if isinstance(r, BaseException)] == []
    # Serialised transactions: no lost update either.
    assert await counter_db.fetch_val("SELECT n FROM counter WHERE id = 1") == 200


async def test_two_processes_worth_of_writers_do_not_lock_each_other(
    counter_db: Database, tmp_path: Path
) -> None:
    # A second Database has its own writer connection: it contends through SQLite's file lock,
    # as another Hypercorn worker would. BEGIN IMMEDIATE + busy_timeout make it wait, not fail.
    other = connect_database(f"sqlite:///{tmp_path / 'c.db'}", SQLITE_BUSY_TIMEOUT_MS=10000)
    async with other:
        tasks = [read_then_write(db) for _ in range(100) for db in (counter_db, other)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert await counter_db.fetch_val("SELECT n FROM counter WHERE id = 1") == 200


async def test_connections_are_long_lived(counter_db: Database) -> None:
    pool = counter_db._backend._royal_pool
    await asyncio.gather(*(counter_db.fetch_val("SELECT n FROM counter") for _ in range(300)))
    await asyncio.gather(*(read_then_write(counter_db) for _ in range(20)))
    # 300 reads and 20 transactions later: at most the configured readers plus one writer.
    assert 1 < len(pool._all) <= 5


async def test_a_failed_transaction_rolls_back_and_frees_the_writer(counter_db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with counter_db.transaction():
            await counter_db.execute("UPDATE counter SET n = 99 WHERE id = 1")
            raise RuntimeError("abort")
    assert await counter_db.fetch_val("SELECT n FROM counter WHERE id = 1") == 0
    await read_then_write(counter_db)  # the writer is free again
    assert await counter_db.fetch_val("SELECT n FROM counter WHERE id = 1") == 1


async def test_a_cancelled_transaction_does_not_poison_the_writer(counter_db: Database) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        async with counter_db.transaction():
            await counter_db.execute("UPDATE counter SET n = 50 WHERE id = 1")
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await read_then_write(counter_db)
    assert await counter_db.fetch_val("SELECT n FROM counter WHERE id = 1") == 1


async def test_insert_returning_goes_to_the_writer(counter_db: Database) -> None:
    row = await counter_db.fetch_one(
        "INSERT INTO counter (id, n) VALUES (:id, :n) RETURNING id, n", {"id": 2, "n": 7}
    )
    assert row is not None and (row["id"], row["n"]) == (2, 7)


async def test_nested_transactions_use_savepoints(counter_db: Database) -> None:
    async with counter_db.transaction():
        await counter_db.execute("UPDATE counter SET n = 1 WHERE id = 1")
        with pytest.raises(ValueError):
            async with counter_db.transaction():
                await counter_db.execute("UPDATE counter SET n = 2 WHERE id = 1")
                raise ValueError
    assert await counter_db.fetch_val("SELECT n FROM counter WHERE id = 1") == 1


async def test_pragmas_on_every_connection(counter_db: Database) -> None:
    assert await counter_db.fetch_val("PRAGMA journal_mode") == "wal"
    assert await counter_db.fetch_val("PRAGMA foreign_keys") == 1
    assert await counter_db.fetch_val("PRAGMA busy_timeout") == 10000
    async with counter_db.transaction():
        assert await counter_db.fetch_val("PRAGMA foreign_keys") == 1


async def test_in_memory_database_is_one_database() -> None:
    async with connect_database("sqlite:///:memory:") as database:
        await database.execute("CREATE TABLE t (x INTEGER)")
        await database.execute("INSERT INTO t VALUES (1)")
        counts = await asyncio.gather(
            *(database.fetch_val("SELECT count(*) FROM t") for _ in range(10))
        )
    assert counts == [1] * 10


@pytest.mark.parametrize(
    ("sql", "read_only"),
    [
        ("SELECT 1", True),
        ("  -- lead\n select x from t", True),
        ("/* c */ VALUES (1)", True),
        ("PRAGMA journal_mode", True),
        ("PRAGMA journal_mode = WAL", False),
        ("INSERT INTO t VALUES (1)", False),
        ("UPDATE t SET x = 1", False),
        ("WITH x AS (SELECT 1) DELETE FROM t", False),
        ("CREATE TABLE t (x)", False),
    ],
)
def test_statement_routing(sql: str, read_only: bool) -> None:
    assert is_read_only(sql) is read_only


async def test_remembered_statements_bind_each_call_by_its_own_types(counter_db: Database) -> None:
    """The compiled form is kept per SQL text and parameter types: the same text with an int,
    None, a datetime and a bool binds each as SQLAlchemy would, call after call."""
    await counter_db.execute("CREATE TABLE kinds (id INTEGER PRIMARY KEY, v)")
    insert = "INSERT INTO kinds (id, v) VALUES (:id, :v)"
    when = dt.datetime(2026, 11, 23, 3, 40, 1, 250000)
    # sqlite3 cannot bind a Decimal itself: reusing the int's compiled form would fail.
    values: list[object] = [7, None, when, True, "text", decimal.Decimal("1.50"), 7]
    for n, value in enumerate(values):
        await counter_db.execute(insert, {"id": n, "v": value})
    rows = await counter_db.fetch_all("SELECT v FROM kinds ORDER BY id")
    found = [row["v"] for row in rows]
    assert found == [7, None, "2026-11-23 03:40:01.250000", 1, "text", 1.5, 7]
    one = "SELECT v FROM kinds WHERE id = :id"
    assert [await counter_db.fetch_val(one, {"id": n}) for n in (4, 0, 1)] == ["text", 7, None]
