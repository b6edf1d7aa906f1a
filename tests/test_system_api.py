"""/api/system through the test client: who this worker is and what it carries."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

import royal
from royal.blueprints import system
from royal.db import Database
from royal.services import jobs
from royal.streams.extension import get_broker
from tests.conftest import bearer


@pytest.fixture(name="app")
async def _app(make_app: Callable[..., Quart]) -> AsyncIterator[Quart]:
    app = make_app(JOB_WORKERS_ENABLED=False)  # queued jobs stay queued, whoever wires jobs
    if "system" not in app.blueprints:  # until create_app registers it
        app.register_blueprint(system.bp, url_prefix="/api/system")
        system.init_app(app)
    async with app.test_app():
        yield app


async def test_system_describes_this_worker(
    app: Quart, client: Client, db: Database, tokens: dict[str, str]
) -> None:
    await jobs.enqueue(db, "work", {})
    await jobs.enqueue(db, "work", {})
    response = await client.get("/api/system", headers=bearer(tokens["viewer"]))
    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {
        "name",
        "version",
        "started_at",
        "uptime_seconds",
        "database",
        "worker",
        "jobs",
        "streams",
    }
    assert (body["name"], body["version"]) == ("royal", royal.__version__)
    assert body["database"] == {"dialect": "sqlite"}
    assert body["worker"] == {"id": f"{socket.gethostname()}:{os.getpid()}", "pid": os.getpid()}
    assert body["jobs"] == {"queued": 2, "running": 0}
    assert body["streams"] == {"sse_open": 0, "ws_open": 0, "subscriptions": 0}
    started = datetime.fromisoformat(body["started_at"])
    assert started.utcoffset() is not None and body["started_at"].endswith("Z")
    assert started.timestamp() == pytest.approx(app.extensions[system.STARTED_AT], abs=0.001)
    assert 0 <= body["uptime_seconds"] < 60


async def test_uptime_grows_and_stream_counters_are_live(
    app: Quart, client: Client, tokens: dict[str, str]
) -> None:
    viewer = bearer(tokens["viewer"])
    first = await (await client.get("/api/system/", headers=viewer)).get_json()
    await asyncio.sleep(0.05)
    async with app.app_context():
        get_broker().counters.sse_open += 1  # as an open SSE stream would
    second = await (await client.get("/api/system", headers=viewer)).get_json()
    assert second["uptime_seconds"] > first["uptime_seconds"]
    assert second["started_at"] == first["started_at"]
    assert second["streams"]["sse_open"] == 1


async def test_the_start_time_is_taken_when_the_app_is_built(
    make_app: Callable[..., Quart],
) -> None:
    first = make_app()
    system.init_app(first)
    await asyncio.sleep(0.02)
    second = make_app()
    system.init_app(second)
    assert second.extensions[system.STARTED_AT] > first.extensions[system.STARTED_AT]
    assert second.extensions[system.STARTED_AT] == pytest.approx(time.time(), abs=5)


async def test_anonymous_callers_get_401(client: Client) -> None:
    response = await client.get("/api/system")
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "AUTHENTICATION_REQUIRED"
