from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from royal import create_app
from royal.db import Database, connect_database, migrate
from royal.passwords import HashParameters, Passwords
from royal.services import tokens, users
from royal.testing import LiveServer

POSTGRES_URL = os.environ.get(
    "ROYAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(name="sqlite_url")
def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'royal.sqlite3'}"


@pytest.fixture(name="make_app")
def _make_app(sqlite_url: str) -> Callable[..., Quart]:
    """Build a testing app on a fresh SQLite file; keyword overrides go into its config."""

    def make(**overrides: Any) -> Quart:
        return create_app({"ENV": "testing", "DATABASE_URL": sqlite_url, **overrides})

    return make


@pytest.fixture(name="app")
async def _app(make_app: Callable[..., Quart]) -> AsyncIterator[Quart]:
    app = make_app()
    async with app.test_app():  # runs while_serving: connect + migrate
        yield app


@pytest.fixture(name="client")
def _client(app: Quart) -> Client:
    return app.test_client()


@pytest.fixture(name="db")
def _db(app: Quart) -> Database:
    database: Database = app.extensions["royal.db"]
    return database


def _postgres_reachable() -> str | None:
    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return f"{type(error).__name__}: {error}"
    return None


@pytest.fixture(name="postgres_server", scope="session")
def _postgres_server() -> str:
    """The admin URL of the test PostgreSQL; skips when none answers, except in CI."""
    problem = _postgres_reachable()
    if problem is not None:
        message = f"PostgreSQL at {POSTGRES_URL} is unreachable ({problem})"
        if IN_CI:
            pytest.fail(message + "; CI must run the PostgreSQL tests")
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture(name="postgres_url")
def _postgres_url(postgres_server: str) -> Iterator[str]:
    """A throwaway PostgreSQL database for one test (any number of processes may use it)."""
    name = f"royal_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(postgres_server)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(
    name="database_url",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def _database_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on a fresh SQLite file and once on a throwaway PostgreSQL database."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(name="database")
async def _database(database_url: str) -> AsyncIterator[Database]:
    """A connected, migrated Database of each dialect, without an app (for service tests)."""
    database = connect_database(database_url, DATABASE_POOL_SIZE=40)
    async with database:
        await migrate(database)
        yield database


@pytest.fixture(name="live_server")
def _live_server(sqlite_url: str) -> Iterator[Callable[..., LiveServer]]:
    """Start Royal in a real Hypercorn on 127.0.0.1: ``live_server(workers=2, env={...})``."""
    servers: list[LiveServer] = []

    def start(*, workers: int = 1, env: dict[str, str] | None = None, **options: Any) -> LiveServer:
        server = LiveServer(
            {"ROYAL_DATABASE_URL": sqlite_url, **(env or {})}, workers=workers, **options
        )
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


PASSWORD = "correct horse battery staple"
ROLES = ("viewer", "operator", "admin")


@pytest.fixture(name="password_hash", scope="session")
def _password_hash() -> str:
    """One real argon2id hash of PASSWORD, computed once, so creating users costs an INSERT."""
    return Passwords(HashParameters(time_cost=2, memory_cost=19456, parallelism=1)).hash_sync(
        PASSWORD
    )


@pytest.fixture(name="tokens")
async def _tokens(app: Quart, db: Database, password_hash: str) -> dict[str, str]:
    """Bearer tokens for a user of each role, plus ``other`` (a second viewer)."""
    issued: dict[str, str] = {}
    for name, role in [*((r, r) for r in ROLES), ("other", "viewer")]:
        user = await users.insert_user(db, name, password_hash, role)  # type: ignore[arg-type]
        issued[name] = (await tokens.issue_token(db, user.id, "access", 3600)).token
    return issued


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class LiveRoyal:
    """A running Royal (real Hypercorn) plus a bearer token for a user of each role."""

    server: LiveServer
    database_url: str
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ws_url(self) -> str:
        return self.server.url.replace("http://", "ws://") + "/ws"

    def headers(self, role: str = "operator") -> dict[str, str]:
        return bearer(self.tokens[role])

    async def publish(self, topic: str, data: Any, event: str = "message") -> int:
        """Publish through the HTTP API as an operator; returns the event id."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            response = await http.post(
                f"/streams/{topic}", json={"event": event, "data": data}, headers=self.headers()
            )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            response = await http.get("/streams", headers=self.headers("viewer"))
        result: dict[str, Any] = response.json()
        return result


async def seed_users(database_url: str, password_hash: str) -> dict[str, str]:
    """Create (or reuse) a user per role plus ``other``; returns fresh bearer tokens."""
    database = connect_database(database_url)
    issued: dict[str, str] = {}
    async with database:
        for name, role in [*((r, r) for r in ROLES), ("other", "viewer")]:
            user = await users.select_user_by_name(database, name)
            if user is None:
                user = await users.insert_user(database, name, password_hash, role)  # type: ignore[arg-type]
            issued[name] = (await tokens.issue_token(database, user.id, "access", 3600)).token
    return issued


@pytest.fixture(name="live_royal")
def _live_royal(
    live_server: Callable[..., LiveServer], sqlite_url: str, password_hash: str
) -> Callable[..., Awaitable[LiveRoyal]]:
    """``await live_royal(workers=1, env={...}, database_url=None)``: Royal on 127.0.0.1 with
    a user of each role; other keywords go to LiveServer (``app=``, ``cwd=``).

    The database defaults to the test's SQLite file; pass ``postgres_url`` for PostgreSQL.
    """

    async def start(
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        database_url: str | None = None,
        **options: Any,
    ) -> LiveRoyal:
        url = database_url or sqlite_url
        env = {"ROYAL_DATABASE_URL": url, **(env or {})}
        server = await asyncio.to_thread(live_server, workers=workers, env=env, **options)
        return LiveRoyal(server, url, await seed_users(url, password_hash))

    return start
