"""Fixtures for the notes example: the ported app on a fresh SQLite file, logged-in users, and
a Database of each dialect for the service tests."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from examples.notes.royal_notes import create_app, migrate_notes
from royal.db import Database, connect_database, migrate
from royal.services import accounts

REPO_ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "correct horse battery staple"
POSTGRES_URL = os.environ.get(
    "ROYAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(name="sqlite_url")
def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'notes.sqlite3'}"


@pytest.fixture(name="app")
async def _app(sqlite_url: str) -> AsyncIterator[Quart]:
    """The example's own factory, as ``royal serve --app`` builds it, with testing config."""
    app = create_app({"ENV": "testing", "DATABASE_URL": sqlite_url})
    async with app.test_app():  # runs the lifespan: connect, Royal's migrations, then ours
        yield app


@pytest.fixture(name="client")
def _client(app: Quart) -> Client:
    return app.test_client()


@pytest.fixture(name="db")
def _db(app: Quart) -> Database:
    database: Database = app.extensions["royal.db"]
    return database


@pytest.fixture(name="tokens")
async def _tokens(app: Quart, db: Database, client: Client) -> dict[str, str]:
    """Bearer tokens of two viewers, ``alice`` and ``bob``, who logged in over the API."""
    issued: dict[str, str] = {}
    for name in ("alice", "bob"):
        await accounts.create_account(
            db, app.extensions["royal.passwords"], name, PASSWORD, "viewer"
        )
        response = await client.post("/auth/login", json={"username": name, "password": PASSWORD})
        assert response.status_code == 200, await response.get_data()
        issued[name] = (await response.get_json())["access_token"]
    return issued


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- a Database of each dialect, without an app (service tests) ---------------------------


def _postgres_problem() -> str | None:
    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return f"{type(error).__name__}: {error}"
    return None


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(name="postgres_url")
def _postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database; skips when no server answers, except in CI."""
    problem = _postgres_problem()
    if problem is not None:
        message = f"PostgreSQL at {POSTGRES_URL} is unreachable ({problem})"
        if IN_CI:
            pytest.fail(message + "; CI must run the PostgreSQL tests")
        pytest.skip(message)
    name = f"royal_notes_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(
    name="database_url",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def _database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(name="database")
async def _database(database_url: str) -> AsyncIterator[Database]:
    """A connected Database with Royal's migrations and then the example's applied."""
    database = connect_database(database_url)
    async with database:
        await migrate(database)
        await migrate_notes(database)
        yield database
