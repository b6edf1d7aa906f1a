"""Royal in a real Hypercorn on 127.0.0.1, spoken to over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from royal.testing import LiveServer


def test_probes_docs_and_errors_over_http(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    with httpx.Client(base_url=server.url, timeout=5) as http:
        assert http.get("/healthz").text == "ok"
        assert http.get("/health").text == "ok"
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        spec = http.get("/openapi.json").json()
        assert "/readyz" in spec["paths"]
        missing = http.get("/nope")
        assert missing.status_code == 404
        assert missing.json() == {"error": "Not Found", "status_code": 404}
        assert missing.headers["content-type"] == "application/json"
        assert missing.headers["x-request-id"]


def test_two_workers_share_one_port_and_one_sqlite_file(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server(workers=2)
    with httpx.Client(base_url=server.url, timeout=5) as http:
        statuses = {http.get("/readyz").status_code for _ in range(20)}
    assert statuses == {200}
    assert server.output().count("Running on") == 2


@pytest.mark.postgres
def test_serves_on_postgres(live_server: Callable[..., LiveServer], postgres_url: str) -> None:
    server = live_server(env={"ROYAL_DATABASE_URL": postgres_url})
    with httpx.Client(base_url=server.url, timeout=5) as http:
        ready = http.get("/readyz").json()
    assert ready["checks"]["database"]["dialect"] == "postgres"


def test_sigterm_stops_the_server_cleanly(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    assert server.stop() == 0


def test_first_run_creates_admin_and_prints_the_password_once(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server()
    match = re.search(r"Created the first user: 'admin' with password '([^']+)'", server.output())
    assert match, server.output()
    password = match.group(1)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        login = http.post("/auth/login", json={"username": "admin", "password": password})
        assert login.status_code == 200
        token = login.json()["access_token"]
        me = http.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["role"] == "admin"
        malformed = http.post(
            "/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 400 and malformed.json()["status_code"] == 400
    server.restart()
    assert server.output().count("Created the first user") == 1  # never again
