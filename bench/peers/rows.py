"""The ``items`` table that ``GET /rows/<id>`` reads, on SQLite or PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import psycopg

_CREATE = """CREATE TABLE IF NOT EXISTS items (
                 id INTEGER PRIMARY KEY,
                 name TEXT NOT NULL,
                 value REAL NOT NULL
             )"""

# An upsert, so seeding twice (or next to other rows) leaves rows 1..n exactly as below.
_UPSERT = """INSERT INTO items (id, name, value)
                  VALUES ({p}, {p}, {p})
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, value = excluded.value"""


def seed_rows(path_or_url: str, n: int) -> None:
    """Create ``items`` if missing and write rows 1..n: ``(i, "item-i", i / 4)``.

    ``path_or_url`` is a postgresql:// URL, or a SQLite file path (``sqlite:///`` allowed).
    """
    if path_or_url.startswith(("postgresql://", "postgres://")):
        with psycopg.connect(path_or_url) as postgres:  # commits on leaving
            postgres.execute(_CREATE)
            postgres.cursor().executemany(_UPSERT.format(p="%s"), _rows(n))
        return
    sqlite = sqlite3.connect(path_or_url.removeprefix("sqlite:///"))
    try:
        with sqlite:  # commits on leaving
            sqlite.execute(_CREATE)
            sqlite.executemany(_UPSERT.format(p="?"), _rows(n))
    finally:
        sqlite.close()


def _rows(n: int) -> Iterator[tuple[int, str, float]]:
    return ((i, f"item-{i}", i / 4) for i in range(1, n + 1))
