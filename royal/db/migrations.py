"""Schema migrations: ``sql/<dialect>/NNNN_name.sql``, applied in order, each exactly once.

The runner takes a database-wide lock before it reads what is applied (BEGIN IMMEDIATE on
SQLite, a transaction-scoped advisory lock on PostgreSQL), so workers that start at the same
moment apply every migration once: the others wait, then find nothing pending. A migration and
its ``schema_migration`` row commit together or not at all.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from royal.db import Database

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Installed wheels carry the migrations inside the package; a source checkout keeps them at the top.
SQL_DIR = _PACKAGE_DIR / "sql" if (_PACKAGE_DIR / "sql").is_dir() else _PACKAGE_DIR.parent / "sql"

MIGRATION_LOCK_KEY = 0x726F79616C  # "royal": the advisory lock id on PostgreSQL
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self) -> list[str]:
        return split_statements(self.path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class MigrationStatus:
    applied: list[int]
    pending: list[Migration]


def discover(sql_dir: Path, dialect: str) -> list[Migration]:
    """The migration files of one dialect, in version order; refuses duplicates and odd names."""
    folder = sql_dir / dialect
    migrations: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: migration files are named NNNN_description.sql")
        version = int(match.group(1))
        if version in migrations:
            raise ValueError(f"{path}: version {version} is used twice")
        migrations[version] = Migration(version, match.group(2), path)
    return [migrations[v] for v in sorted(migrations)]


def split_statements(script: str) -> list[str]:
    """Split an SQL script into whole statements (triggers with inner semicolons stay whole)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if _has_code(current):
                statements.append(current.strip())
            current = ""
    if _has_code(current):
        statements.append(current.strip())
    return statements


def _has_code(sql: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines())


_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS schema_migration (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


async def migrate(
    db: Database,
    sql_dir: Path = SQL_DIR,
    *,
    progress: Callable[[Migration], None] | None = None,
) -> list[Migration]:
    """Apply the pending migrations; returns those applied by this call."""
    known = discover(sql_dir, db.dialect)
    applied_now: list[Migration] = []
    async with db.connection() as connection, connection.transaction():
        raw = connection.raw_connection
        if db.dialect == "postgres":
            await raw.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        # On SQLite the transaction itself began with BEGIN IMMEDIATE: the write lock is held.
        await connection.execute(_CREATE_TABLE)
        done = {row[0] for row in await connection.fetch_all(_SELECT_VERSIONS)}
        for migration in known:
            if migration.version in done:
                continue
            if progress is not None:
                progress(migration)
            await _run_script(db.dialect, raw, migration)
            await connection.execute(
                """INSERT INTO schema_migration (version, name, applied_at)
                        VALUES (:version, :name, CURRENT_TIMESTAMP)""",
                {"version": migration.version, "name": migration.name},
            )
            applied_now.append(migration)
    return applied_now


_SELECT_VERSIONS = "SELECT version FROM schema_migration ORDER BY version"


async def _run_script(dialect: str, raw: Any, migration: Migration) -> None:
    if dialect == "postgres":
        # asyncpg's execute without arguments uses the simple protocol: many statements at once.
        await raw.execute(migration.path.read_text(encoding="utf-8"))
        return
    # sqlite3's executescript would COMMIT the open transaction first: run statement by statement.
    for statement in migration.statements():
        await raw.execute(statement)


async def status(db: Database, sql_dir: Path = SQL_DIR) -> MigrationStatus:
    """What is applied and what is pending, without changing anything."""
    known = discover(sql_dir, db.dialect)
    rows = await db.fetch_all(_SELECT_VERSIONS) if await _has_migration_table(db) else []
    applied = [row[0] for row in rows]
    return MigrationStatus(applied, [m for m in known if m.version not in applied])


async def _has_migration_table(db: Database) -> bool:
    if db.dialect == "postgres":
        found = await db.fetch_val("SELECT to_regclass('schema_migration') IS NOT NULL")
    else:
        found = await db.fetch_val(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migration'"
        )
    return bool(found)


async def migrate_url(url: str, sql_dir: Path = SQL_DIR) -> list[Migration]:
    """Migrate the database at ``url`` with a short-lived connection, before any app exists."""
    from royal.db import connect_database

    database = connect_database(url)
    await database.connect()
    try:
        return await migrate(database, sql_dir)
    finally:
        await database.disconnect()
