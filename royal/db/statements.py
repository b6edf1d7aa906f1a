"""Raw SQL compiled once per text and parameter types, bound afresh on every call.

`databases` compiles every statement with SQLAlchemy before sending it, about a third of the
CPU of a request that reads one row. Royal's SQL is raw text with bound parameters
(``text(sql).bindparams(**values)``), so the compiled string, the order of its parameters
and their converters (datetime to text, Decimal to float, ...) depend only on the text and
the Python types of the values; both backends keep them here, keyed by exactly that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.sql import ClauseElement, TextClause

Key = tuple[str, tuple[tuple[str, type], ...]]
MAX_STATEMENTS = 2048  # SQL built at run time (IN lists) could grow it: start over past this


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    order: tuple[str, ...]  # parameter names, in the order the driver takes them
    converters: dict[str, Callable[[Any], Any]]
    extra: tuple[Any, ...]  # what the backend's compile returns besides sql and args

    def bind(self, query: TextClause) -> list[Any]:
        binds = query._bindparams
        converters = self.converters
        return [
            converters[name](binds[name].value) if name in converters else binds[name].value
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
        if not isinstance(query, TextClause):
            return by_databases(query)

        def build(text: TextClause) -> Statement:
            sql, _, *extra = by_databases(text)
            compiled: Any = text.compile(
                dialect=dialect, compile_kwargs={"render_postcompile": True}
            )
            order = (
                tuple(compiled.positiontup or ()) if positional else tuple(sorted(compiled.params))
            )
            return Statement(sql, order, converters_of(compiled, order), tuple(extra))

        statement = self.get(query, build)
        return (statement.sql, statement.bind(query), *statement.extra)

    def get(self, query: TextClause, build: Callable[[TextClause], Statement]) -> Statement:
        binds = query._bindparams
        key = (query.text, tuple((name, type(bind.value)) for name, bind in binds.items()))
        statement = self._known.get(key)
        if statement is None:
            if len(self._known) >= MAX_STATEMENTS:
                self._known.clear()
            statement = self._known[key] = build(query)
        return statement


def converters_of(compiled: Any, names: tuple[str, ...]) -> dict[str, Callable[[Any], Any]]:
    """The compiled statement's bind converters of ``names`` (SQLAlchemy's processors)."""
    processors = compiled._bind_processors
    return {name: processors[name] for name in names if name in processors}
