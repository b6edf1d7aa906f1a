"""Alerts over real sockets: SSE and WebSocket clients see alerts raised and alerts expiring."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from royal import create_app
from royal.testing import SSEClient, WSClient
from tests.conftest import LiveRoyal

LiveRoyalFactory = Callable[..., Awaitable[LiveRoyal]]


@pytest.fixture(autouse=True)
def _alerts_are_wired(tmp_path: Path) -> None:
    """The server builds its app with create_app; skip until that registers /api/alerts."""
    app = create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp_path / 'probe.db'}"})
    if "alerts" not in app.blueprints:
        pytest.skip("create_app does not register the alerts blueprint yet")


async def subscriptions(live: LiveRoyal) -> int:
    return int((await live.stats())["counters"]["subscriptions"])


async def test_sse_and_ws_clients_see_an_alert_raised_and_expiring(
    live_royal: LiveRoyalFactory,
) -> None:
    live = await live_royal(env={"ROYAL_ALERT_EXPIRY_CHECK_SECONDS": "0.5"})
    viewer = live.tokens["viewer"]
    async with (
        SSEClient(f"{live.url}/streams/alerts", token=viewer) as stream,
        WSClient(live.ws_url, token=viewer) as client,
    ):
        assert await client.subscribe(["alerts"]) == {"type": "subscribed", "topics": ["alerts"]}
        deadline = time.monotonic() + 5
        while await subscriptions(live) < 2:  # the SSE stream subscribes as it opens
            assert time.monotonic() < deadline, "the SSE stream did not subscribe"
            await asyncio.sleep(0.02)

        expires_at = datetime.now(UTC) + timedelta(seconds=1.5)
        body = {
            "event_code": "EAN",
            "message": "Emergency action notification",
            "severity": "extreme",
            "areas": ["000000"],
            "expires_at": expires_at.isoformat(),
        }
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            response = await http.post("/api/alerts", json=body, headers=live.headers("operator"))
        assert response.status_code == 201, response.text
        alert = response.json()

        [created] = await stream.read(1, timeout=5)
        [created_ws] = await client.events(1, timeout=5)
        assert created.event == "alert.created" and json.loads(created.data) == alert
        assert (created_ws["event"], created_ws["data"]) == ("alert.created", alert)
        assert created_ws["id"] == int(created.id or 0)

        [expired] = await stream.read(1, timeout=5)
        elapsed = time.monotonic() - started
        [expired_ws] = await client.events(1, timeout=5)
    data = json.loads(expired.data)
    assert expired.event == "alert.expired" and data["id"] == alert["id"] and data["expired"]
    assert (expired_ws["event"], expired_ws["data"]) == ("alert.expired", data)
    assert 1.2 < elapsed < 3.0, elapsed
