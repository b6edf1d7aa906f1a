"""Metrics: the JSON contract and the Prometheus text, in one process (Quart's test client)
and added up over two real Hypercorn workers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from quart import Quart
from quart.typing import TestClientProtocol as Client

from tests.conftest import LiveRoyal, bearer

StartRoyal = Callable[..., Awaitable[LiveRoyal]]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text; 0 when it is absent."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric == name and all(part in rest for part in wanted.split(",") if part):
            return float(value)
    return 0.0


async def test_json_keeps_the_old_contract_and_adds_the_rest(
    client: Client, tokens: dict[str, str]
) -> None:
    for _ in range(3):
        await client.get("/healthz")
    response = await client.get("/metrics", headers=bearer(tokens["viewer"]))
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    assert body["ok"] is True and body["backend"] == "quart"
    assert body["uptime_seconds"] >= 0 and body["active_sessions"] == 0
    assert body["requests"]["total"] >= 3 and body["requests"]["by_status"]["2xx"] >= 3
    assert body["requests"]["latency_ms"]["p50"] is not None
    assert set(body["streams"]) == {"sse_open", "ws_open", "counters"}
    assert set(body["jobs"]) == {"queued", "running"}  # the queue's depth, from the database
    assert body["agent"] == {"backend": "local", "model": "royal-local", "breaker": None}


async def test_active_sessions_count_sessions_in_use(
    client: Client, tokens: dict[str, str]
) -> None:
    for _ in range(2):
        await client.post("/agents/session", headers=bearer(tokens["viewer"]))
    body = await (await client.get("/metrics", headers=bearer(tokens["viewer"]))).get_json()
    assert body["active_sessions"] == 2


async def test_metrics_need_a_user_unless_public(
    client: Client, make_app: Callable[..., Quart]
) -> None:
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics/prometheus")).status_code == 401
    open_app = make_app(METRICS_PUBLIC=True)
    async with open_app.test_app() as test_app:
        anonymous = test_app.test_client()
        assert (await anonymous.get("/metrics")).status_code == 200
        assert (await anonymous.get("/metrics/prometheus")).status_code == 200


async def test_prometheus_counts_requests_by_route(client: Client, tokens: dict[str, str]) -> None:
    headers = bearer(tokens["viewer"])
    before = (await (await client.get("/metrics/prometheus", headers=headers)).get_data()).decode()
    for _ in range(4):
        await client.get("/api/alerts", headers=headers)
    await client.get("/no/such/path", headers=headers)
    response = await client.get("/metrics/prometheus", headers=headers)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    text = (await response.get_data()).decode()
    name = "royal_http_requests_total"
    route = {"method": "GET", "route": "/api/alerts/", "status": "200"}
    assert sample(text, name, **route) - sample(before, name, **route) == 4
    assert sample(text, name, route="<unmatched>", status="404") >= 1
    assert sample(text, "royal_http_request_duration_seconds_count", route="/api/alerts/") >= 4
    assert re.search(r'^royal_jobs\{status="queued"\} \d+\.0$', text, re.MULTILINE)
    for metric in ("royal_sse_connections", "royal_websocket_connections", "royal_workers"):
        assert f"# TYPE {metric} gauge" in text
    assert "# TYPE royal_agent_sessions_active gauge" in text


async def test_two_workers_add_up(live_royal: StartRoyal) -> None:
    live = await live_royal(workers=2)
    pids: set[int] = set()
    count = 60
    for _ in range(count):  # a new connection each time: the workers share them out
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            response = await http.get("/metrics", headers=live.headers("viewer"))
            pids.add(response.json()["worker_pid"])
    assert len(pids) == 2, "both workers answered"
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        text = (await http.get("/metrics/prometheus", headers=live.headers("viewer"))).text
    # Every /metrics request, whichever worker answered it, is in the one scrape.
    assert sample(text, "royal_http_requests_total", route="/metrics", status="200") == count
    assert sample(text, "royal_workers") == 2
