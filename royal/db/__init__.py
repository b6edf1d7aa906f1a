"""The app's one Database, connected and closed with the serving lifecycle.

Only this package imports `databases`; everything else receives the ``Database`` it is given.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import databases
from quart import Quart, current_app

from royal import readiness
from royal.db.migrations import SQL_DIR, migrate
from royal.db.statements import BoundSQL

__all__ = ["Database", "Record", "SQL_DIR", "connect_database", "get_db", "init_app", "migrate"]

Record = databases.interfaces.Record


class Connection(databases.core.Connection):
    @staticmethod
    def _build_query(query: Any, values: dict[str, Any] | None = None) -> Any:
        """Raw SQL goes to the backend as text and values, bound without SQLAlchemy."""
        if isinstance(query, str):
            return BoundSQL(query, values or {})
        return databases.core.Connection._build_query(query, values)


class Database(databases.Database):
    """`databases.Database` with Royal's long-lived SQLite backend, and both backends
    compiling each raw statement once (statements.py)."""

    def connection(self) -> databases.core.Connection:
        """`databases`' own, making Royal's Connection: one per task, as there."""
        if self._global_connection is not None:
            return self._global_connection
        if not self._connection:
            self._connection = Connection(self, self._backend)
        return self._connection

    SUPPORTED_BACKENDS = {
        **databases.Database.SUPPORTED_BACKENDS,
        "sqlite": "royal.db.sqlite:SQLiteBackend",
        "postgresql": "royal.db.postgres:PostgresBackend",
        "postgres": "royal.db.postgres:PostgresBackend",
    }

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgres``: the SQL that migrations and services speak."""
        return "postgres" if self.url.dialect in ("postgresql", "postgres") else self.url.dialect

    async def check(self) -> dict[str, Any]:
        """Readiness: one round trip to the database."""
        await self.fetch_val("SELECT 1")
        return {"dialect": self.dialect}


def connect_database(url: str, **config: Any) -> Database:
    """Build a Database for ``url`` with the pool options its dialect understands."""
    options: dict[str, Any] = {}
    if url.startswith("sqlite"):
        options["readers"] = config.get("SQLITE_READERS", 4)
        options["busy_timeout_ms"] = config.get("SQLITE_BUSY_TIMEOUT_MS", 5000)
    elif url.startswith("postgres"):
        # min_size 0: the process starts while PostgreSQL is down and /readyz says so.
        options["min_size"] = 0
        options["max_size"] = config.get("DATABASE_POOL_SIZE", 10)
        # A new connection that takes longer than this is an outage (a 503), not a wait.
        options["timeout"] = config.get("DATABASE_CONNECT_TIMEOUT_SECONDS", 3.0)
    return Database(url, force_rollback=config.get("DATABASE_FORCE_ROLLBACK", False), **options)


def init_app(app: Quart) -> None:
    database = connect_database(app.config["DATABASE_URL"], **app.config)
    app.extensions["royal.db"] = database
    readiness.add_check(app, "database", database.check)

    @app.while_serving
    async def _lifespan() -> AsyncGenerator[None, None]:
        await database.connect()
        try:
            if app.config["MIGRATE_ON_START"]:
                await migrate(database)
            yield
        finally:
            await database.disconnect()

    from royal.db.commands import db_command

    app.cli.add_command(db_command)


def get_db() -> Database:
    """The current app's Database (inside an app or request context)."""
    database: Database = current_app.extensions["royal.db"]
    return database
