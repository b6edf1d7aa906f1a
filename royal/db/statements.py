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

from sqlalchemy.sql import TextClause

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
