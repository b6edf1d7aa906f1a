"""`databases`' asyncpg backend, with raw statements compiled once (statements.py) and a
connect that fails fast with DatabaseUnavailable while PostgreSQL is out of reach."""

from __future__ import annotations

from typing import Any

from databases.backends import postgres as base
from sqlalchemy.sql import ClauseElement

from royal.db.availability import DatabaseUnavailable
from royal.db.statements import Statements

_STATEMENTS = Statements()


class PostgresBackend(base.PostgresBackend):
    def connection(self) -> PostgresConnection:
        return PostgresConnection(self, self._dialect)


class PostgresConnection(base.PostgresConnection):
    async def acquire(self) -> None:
        try:
            await super().acquire()
        except (OSError, TimeoutError) as error:
            raise DatabaseUnavailable(f"PostgreSQL is unreachable: {error!r}") from error

    def _compile(self, query: ClauseElement) -> Any:  # (sql, args, result map)
        return _STATEMENTS.compile(query, super()._compile, self._dialect, positional=False)
