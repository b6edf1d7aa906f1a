"""Migrations apply in order, exactly once, atomically, also when two runners race."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from royal.db import SQL_DIR, connect_database
from royal.db.migrations import discover, migrate_url, split_statements, status


def write_migrations(root: Path, dialect: str, files: dict[str, str]) -> Path:
    folder = root / dialect
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return root


# The slow part makes two concurrent runners overlap; the counter row shows how often 0002 ran.
SQLITE_MIGRATIONS = {
    "0001_counter.sql": "CREATE TABLE counter (n INTEGER NOT NULL);",
    "0002_slow_insert.sql": """
        -- a comment with a ; semicolon
        CREATE TABLE filler (x INTEGER);
        WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < 200000)
        INSERT INTO filler SELECT x FROM seq;
        INSERT INTO counter (n) VALUES (1);
        CREATE TRIGGER filler_guard AFTER DELETE ON filler BEGIN
            INSERT INTO counter (n) VALUES (-1);
        END;
    """,
}
POSTGRES_MIGRATIONS = {
    "0001_counter.sql": "CREATE TABLE counter (n INTEGER NOT NULL);",
    "0002_slow_insert.sql": """
        SELECT pg_sleep(0.3);
        INSERT INTO counter (n) VALUES (1);
        CREATE FUNCTION noop() RETURNS trigger AS $$ BEGIN RETURN NEW; END; $$ LANGUAGE plpgsql;
    """,
}


def test_split_statements_keeps_triggers_whole() -> None:
    statements = split_statements(SQLITE_MIGRATIONS["0002_slow_insert.sql"])
    assert len(statements) == 4
    assert statements[-1].startswith("CREATE TRIGGER") and statements[-1].endswith("END;")


def test_discover_orders_and_refuses_bad_names(tmp_path: Path) -> None:
    root = write_migrations(
        tmp_path, "sqlite", {"0002_b.sql": "", "0001_a.sql": "", "0010_c.sql": ""}
    )
    assert [m.version for m in discover(root, "sqlite")] == [1, 2, 10]
    (root / "sqlite" / "12_bad.sql").write_text("")
    with pytest.raises(ValueError, match="NNNN_description"):
        discover(root, "sqlite")


def test_shipped_migrations_exist_for_both_dialects() -> None:
    sqlite = [(m.version, m.name) for m in discover(SQL_DIR, "sqlite")]
    postgres = [(m.version, m.name) for m in discover(SQL_DIR, "postgres")]
    assert sqlite and sqlite == postgres


async def test_sqlite_migrations_apply_once(tmp_path: Path) -> None:
    root = write_migrations(tmp_path / "sql", "sqlite", SQLITE_MIGRATIONS)
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert [m.version for m in await migrate_url(url, root)] == [1, 2]
    assert await migrate_url(url, root) == []
    database = connect_database(url)
    async with database:
        assert await database.fetch_val("SELECT sum(n) FROM counter") == 1
        state = await status(database, root)
        assert state.applied == [1, 2] and state.pending == []


async def test_status_before_anything_is_applied(tmp_path: Path) -> None:
    root = write_migrations(tmp_path / "sql", "sqlite", SQLITE_MIGRATIONS)
    async with connect_database(f"sqlite:///{tmp_path / 'm.db'}") as database:
        state = await status(database, root)
    assert state.applied == [] and [m.version for m in state.pending] == [1, 2]


async def test_two_concurrent_sqlite_upgrades_apply_each_migration_once(tmp_path: Path) -> None:
    root = write_migrations(tmp_path / "sql", "sqlite", SQLITE_MIGRATIONS)
    url = f"sqlite:///{tmp_path / 'm.db'}"
    # Two Database objects: separate connections contending for the file, as two workers do.
    results = await asyncio.gather(migrate_url(url, root), migrate_url(url, root))
    assert sorted(len(applied) for applied in results) == [0, 2]
    async with connect_database(url) as database:
        assert await database.fetch_val("SELECT sum(n) FROM counter") == 1
        assert await database.fetch_val("SELECT count(*) FROM schema_migration") == 2


async def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    root = write_migrations(
        tmp_path / "sql",
        "sqlite",
        {
            "0001_ok.sql": "CREATE TABLE a (x INTEGER);",
            "0002_bad.sql": "CREATE TABLE b (x);\nNOT SQL;",
        },
    )
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with pytest.raises(Exception, match="syntax error"):
        await migrate_url(url, root)
    async with connect_database(url) as database:
        tables = await database.fetch_all("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert {row[0] for row in tables} == set()  # not even 0001: one transaction for the run


@pytest.mark.postgres
async def test_postgres_migrations_apply_once_under_concurrency(
    tmp_path: Path, postgres_url: str
) -> None:
    root = write_migrations(tmp_path / "sql", "postgres", POSTGRES_MIGRATIONS)
    results = await asyncio.gather(*(migrate_url(postgres_url, root) for _ in range(3)))
    assert sorted(len(applied) for applied in results) == [0, 0, 2]
    async with connect_database(postgres_url) as database:
        assert await database.fetch_val("SELECT sum(n) FROM counter") == 1
        state = await status(database, root)
    assert state.applied == [1, 2] and state.pending == []


@pytest.mark.postgres
async def test_shipped_migrations_apply_on_postgres(postgres_url: str) -> None:
    applied = await migrate_url(postgres_url)
    assert [m.version for m in applied] == [m.version for m in discover(SQL_DIR, "postgres")]
