"""Rows for the Flask peer: sqlite3 with a connection per thread, or a psycopg 3 pool."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any, Protocol

from flask import Flask, current_app
from psycopg import Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from bench.peers.config import PeerConfig


class Rows(Protocol):
    def select_row(self, row_id: int) -> dict[str, Any] | None: ...


class SQLiteRows:
    """One sqlite3 connection per thread, opened on first use and kept.

    Flask's tutorial opens one per request, which costs ~150 µs, as much as the rest of a small
    request; Royal keeps its connections open, so this peer does too. Under the gevent worker
    ``threading.local`` is patched to a greenlet's: one connection per client connection.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()

    def select_row(self, row_id: int) -> dict[str, Any] | None:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = sqlite3.connect(self.path)
            connection.row_factory = sqlite3.Row
        row = connection.execute(
            "SELECT id, name, value FROM items WHERE id = ?", (row_id,)
        ).fetchone()
        return None if row is None else dict(row)


class PostgresRows:
    """A psycopg pool; autocommit, so a read is one round trip (no BEGIN/COMMIT around it)."""

    def __init__(self, url: str, size: int) -> None:
        self.pool = ConnectionPool(
            url,
            min_size=size,
            max_size=size,
            connection_class=Connection[DictRow],
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=True,
        )

    def select_row(self, row_id: int) -> dict[str, Any] | None:
        with self.pool.connection() as connection:
            return connection.execute(
                "SELECT id, name, value FROM items WHERE id = %s", (row_id,)
            ).fetchone()


def init_app(app: Flask, config: PeerConfig) -> None:
    rows: Rows
    if config.postgres_url:
        rows = PostgresRows(config.postgres_url, config.pool_size)
    else:
        rows = SQLiteRows(config.sqlite_path)
    app.extensions["peer.rows"] = rows


def get_rows() -> Rows:
    rows: Rows = current_app.extensions["peer.rows"]
    return rows
