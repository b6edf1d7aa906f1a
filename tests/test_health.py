from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client


@pytest.mark.parametrize("path", ["/health", "/healthz"])
async def test_liveness_is_plain_ok(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert await response.get_data(as_text=True) == "ok"


async def test_readyz_reports_the_database(client: Client) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = await response.get_json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["dialect"] == "sqlite"


async def test_readyz_is_503_when_sqlite_is_unreachable(
    make_app: Callable[..., Quart], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-dir" / "royal.sqlite3"
    app = make_app(DATABASE_URL=f"sqlite:///{missing}", MIGRATE_ON_START=False)
    async with app.test_app():
        response = await app.test_client().get("/readyz")
    assert response.status_code == 503
    body = await response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is False
    assert "unable to open database file" in body["checks"]["database"]["error"]


async def test_readyz_is_503_within_the_timeout_when_postgres_does_not_answer(
    make_app: Callable[..., Quart],
) -> None:
    # Port 9 (discard) on loopback: nothing listens, so every connection attempt fails.
    app = make_app(
        DATABASE_URL="postgresql://postgres@127.0.0.1:9/none",
        MIGRATE_ON_START=False,
        READYZ_TIMEOUT_SECONDS=1.0,
    )
    async with app.test_app():
        response = await app.test_client().get("/readyz")
        assert response.status_code == 503
        body = await response.get_json()
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"]
