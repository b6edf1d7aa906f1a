"""`databases`' asyncpg backend, with raw statements compiled once (statements.py)."""

from __future__ import annotations

from typing import Any

from databases.backends import postgres as base
from sqlalchemy.sql import ClauseElement, TextClause

from royal.db.statements import Statement, Statements, converters_of

_STATEMENTS = Statements()


class PostgresBackend(base.PostgresBackend):
    def connection(self) -> PostgresConnection:
        return PostgresConnection(self, self._dialect)


class PostgresConnection(base.PostgresConnection):
    def _compile(self, query: ClauseElement) -> Any:  # (sql, args, result map)
        if not isinstance(query, TextClause):
            return super()._compile(query)
        statement = _STATEMENTS.get(query, self._statement)
        return (statement.sql, statement.bind(query), *statement.extra)

    def _statement(self, query: TextClause) -> Statement:
        by_databases: Any = super()._compile(query)
        sql, _, result_map = by_databases
        compiled: Any = query.compile(
            dialect=self._dialect, compile_kwargs={"render_postcompile": True}
        )
        order = tuple(sorted(compiled.params))  # $1, $2, ... follow the sorted names
        return Statement(sql, order, converters_of(compiled, order), (result_map,))
