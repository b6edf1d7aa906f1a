"""Live metrics over real sockets: a snapshot on the ephemeral `metrics` topic, on SSE and on
the WebSocket, with the whole deployment's figures even when it runs two workers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import httpx

from royal.testing import SSEClient, WSClient
from tests.conftest import LiveRoyal

StartRoyal = Callable[..., Awaitable[LiveRoyal]]
SNAPSHOT_KEYS = {
    "at",
    "worker_pid",
    "workers",
    "requests_total",
    "requests_per_second",
    "errors_per_second",
    "latency_ms",
    "sse_open",
    "ws_open",
    "jobs",
    "alerts_active",
    "active_sessions",
    "agent_circuit_open",
}


async def test_snapshots_arrive_on_sse_and_websocket(live_royal: StartRoyal) -> None:
    live = await live_royal()
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers("admin")) as http:
        changed = await http.put("/api/settings/metrics_interval_seconds", json={"value": 1})
        assert changed.status_code == 200
        raised = await http.post(
            "/api/alerts",
            json={"event_code": "RWT", "message": "Weekly test", "severity": "minor"},
        )
        assert raised.status_code == 201
    async with SSEClient(f"{live.url}/streams/metrics", token=live.tokens["viewer"]) as stream:
        # The newest snapshot at once (the broker keeps it), then a fresh one every second.
        events = await stream.read(3, timeout=10)
    snapshots = [json.loads(event.data) for event in events]
    assert {event.event for event in events} == {"metrics"}
    assert all(set(snapshot) == SNAPSHOT_KEYS for snapshot in snapshots)
    assert snapshots[-1]["at"] > snapshots[0]["at"]
    assert snapshots[-1]["alerts_active"] == 1 and snapshots[-1]["sse_open"] == 1
    assert snapshots[-1]["workers"] == 1 and snapshots[-1]["requests_per_second"] is not None
    assert snapshots[-1]["errors_per_second"] == 0
    async with WSClient(live.ws_url, token=live.tokens["viewer"]) as ws:
        assert (await ws.subscribe(["metrics"]))["type"] == "subscribed"
        (message,) = await ws.events(1, timeout=5)
    assert message["topic"] == "metrics" and message["id"] is None
    assert set(message["data"]) == SNAPSHOT_KEYS


async def test_a_snapshot_counts_every_worker(live_royal: StartRoyal) -> None:
    live = await live_royal(workers=2)
    token = live.tokens["viewer"]
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers("admin")) as http:
        await http.put("/api/settings/metrics_interval_seconds", json={"value": 1})
    # Open streams until both workers hold one; the snapshot of either sees all of them.
    streams = []
    try:
        for _ in range(8):
            streams.append(await SSEClient(f"{live.url}/streams/metrics", token=token).open())
        snapshot = {}
        for _ in range(10):
            (event,) = await streams[0].read(1, timeout=5)
            snapshot = json.loads(event.data)
            if snapshot["sse_open"] == len(streams) and snapshot["workers"] == 2:
                break
        assert snapshot["workers"] == 2
        assert snapshot["sse_open"] == len(streams)
    finally:
        for stream in streams:
            await stream.close()
