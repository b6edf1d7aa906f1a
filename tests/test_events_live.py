"""An EAS decoder posts an alert event (twice); subscribers see exactly one alert, live."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import httpx

from royal.testing import SSEClient, WSClient
from tests.conftest import LiveRoyal

EVENT = {
    "id": "eas-2026-11-22-001",
    "type": "alert",
    "source": "eas-decoder-1",
    "data": {
        "event_code": "TOR",
        "message": "Tornado warning",
        "severity": "severe",
        "areas": ["039035"],
    },
}


async def test_an_alert_event_reaches_sse_and_websocket_subscribers_once(
    live_royal: Callable[..., Awaitable[LiveRoyal]],
) -> None:
    live = await live_royal(env={"ROYAL_JOB_POLL_SECONDS": "0.1"})
    async with (
        SSEClient(f"{live.url}/streams/alerts", token=live.tokens["viewer"]) as sse,
        WSClient(live.ws_url, token=live.tokens["viewer"]) as ws,
    ):
        assert (await ws.subscribe(["alerts"]))["type"] == "subscribed"
        async with httpx.AsyncClient(base_url=live.url, headers=live.headers(), timeout=10) as http:
            first, repeat = [await http.post("/events", json=EVENT) for _ in range(2)]
        assert (first.status_code, repeat.status_code) == (201, 200)

        [frame] = await sse.read(1, timeout=10)
        [message] = await ws.events(1, timeout=10)
        assert frame.event == "alert.created" and message["event"] == "alert.created"
        alert = json.loads(frame.data)
        assert message["data"] == alert and message["id"] == int(frame.id or 0)
        assert alert["event_code"] == "TOR" and alert["source_event_id"] == EVENT["id"]

        # The repeat was processed once: no second alert follows.
        await asyncio.sleep(1.0)
        try:
            extra = await sse.read(1, timeout=0.5)
        except TimeoutError:
            extra = []
        assert extra == []
        async with httpx.AsyncClient(base_url=live.url, headers=live.headers(), timeout=10) as http:
            listing = (await http.get("/api/alerts")).json()
        assert [a["source_event_id"] for a in listing["items"]] == [EVENT["id"]]
