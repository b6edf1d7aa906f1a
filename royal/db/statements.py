"""Raw SQL compiled once per text and parameter types, bound afresh on every call.

`databases` compiles every statement with SQLAlchemy before sending it, about a third of the
CPU of a request that reads one row. Royal's SQL is raw text with bound parameters, so the
compiled string, the order of its parameters and their converters (datetime to text, Decimal
to float, ...) depend only on the text and the Python types of the values; both backends keep
them here, keyed by exactly that.

Royal's connections hand the backends a ``BoundSQL`` (text and values) instead of
``text(sql).bindparams(**values)``: that clone cost ~30 µs per query and left ~16 objects in
reference cycles for the garbage collector. SQLAlchemy builds a statement only the first time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.sql import ClauseElement, TextClause, text

Key = tuple[str, tuple[tuple[str, type], ...]]
MAX_STATEMENTS = 2048  # SQL built at run time (IN lists) could grow it: start over past this


@dataclass(frozen=True, slots=True)
class BoundSQL:
    """Raw SQL and its parameter values, as a Royal connection passes them to its backend."""

    sql: str
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    order: tuple[str, ...]  # parameter names, in the order the driver takes them
    converters: dict[str, Callable[[Any], Any]]
    extra: tuple[Any, ...]  # what the backend's compile returns besides sql and args

    def bind(self, values: Mapping[str, Any]) -> list[Any]:
        converters = self.converters
        return [
            converters[name](values[name]) if name in converters else values[name]
            for name in self.order
        ]


class Statements:
    def __init__(self) -> None:
        self._known: dict[Key, Statement] = {}

    def compile(
        self,
        query: ClauseElement,
        by_databases: Callable[[ClauseElement], Any],
        dialect: Any,
        *,
        positional: bool,
    ) -> Any:
        """A backend's ``_compile(query)`` (``by_databases``) for raw text remembered:
        ``(sql, args, *what else it returns)``. ``positional``: the driver takes the
        parameters in the order they appear (``?``, SQLite), else by sorted name ($n)."""
        if isinstance(query, BoundSQL):
            sql, values = query.sql, query.values
        elif isinstance(query, TextClause):
            sql = query.text
            values = {name: bind.value for name, bind in query._bindparams.items()}
        else:
            return by_databases(query)

        def build() -> Statement:
            clause = text(sql).bindparams(**values) if values else text(sql)
            compiled_sql, _, *extra = by_databases(clause)
            compiled: Any = clause.compile(
                dialect=dialect, compile_kwargs={"render_postcompile": True}
            )
            order = (
                tuple(compiled.positiontup or ()) if positional else tuple(sorted(compiled.params))
            )
            return Statement(compiled_sql, order, converters_of(compiled, order), tuple(extra))

        key = (sql, tuple((name, type(value)) for name, value in values.items()))
        statement = self.get(key, build)
        return (statement.sql, statement.bind(values), *statement.extra)

    def get(self, key: Key, build: Callable[[], Statement]) -> Statement:
        statement = self._known.get(key)
        if statement is None:
            if len(self._known) >= MAX_STATEMENTS:
                self._known.clear()
            statement = self._known[key] = build()
        return statement


def converters_of(compiled: Any, names: tuple[str, ...]) -> dict[str, Callable[[Any], Any]]:
    """The compiled statement's bind converters of ``names`` (SQLAlchemy's processors)."""
    processors = compiled._bind_processors
    return {name: processors[name] for name in names if name in processors}
