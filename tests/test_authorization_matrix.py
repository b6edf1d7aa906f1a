"""Every route (HTTP, SSE, WebSocket) against every kind of caller, each code asserted.

The table must name every route the app has: a new route without a row fails
``test_the_matrix_covers_every_route``, so nothing ships without a decision about who may use it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from quart import Quart
from quart.testing.connections import WebsocketResponseError
from quart.typing import TestClientProtocol as Client

from royal.db import Database
from royal.services import tokens, users
from tests.conftest import PASSWORD

CALLERS = ("anonymous", "viewer", "operator", "admin")
ROLES_TO_SEED = ("viewer", "operator", "admin")


@dataclass(frozen=True)
class Case:
    method: str  # GET, POST, ... or WS
    rule: str  # the URL rule as Quart prints it
    path: str  # what to request
    expected: dict[str, int]
    kind: str = "http"  # http, sse or ws
    body: dict[str, Any] | None = field(default=None, hash=False)


def everyone(code: int) -> dict[str, int]:
    return dict.fromkeys(CALLERS, code)


def users_only(code: int) -> dict[str, int]:
    return {"anonymous": 401, "viewer": code, "operator": code, "admin": code}


def operators(code: int) -> dict[str, int]:
    return {"anonymous": 401, "viewer": 403, "operator": code, "admin": code}


MATRIX = [
    Case("GET", "/health", "/health", everyone(200)),
    Case("GET", "/healthz", "/healthz", everyone(200)),
    Case("GET", "/readyz", "/readyz", everyone(200)),
    Case("GET", "/openapi.json", "/openapi.json", everyone(200)),
    Case("GET", "/docs", "/docs", everyone(200)),
    Case("GET", "/redocs", "/redocs", everyone(200)),
    Case("GET", "/scalar", "/scalar", everyone(200)),
    # The dashboard: its sign-in page for anonymous callers; its assets hold no data.
    Case("GET", "/", "/", everyone(200)),
    Case(
        "GET",
        "/dashboard/static/<path:filename>",
        "/dashboard/static/js/main.js",
        everyone(200),
    ),
    Case(
        "POST",
        "/auth/login",
        "/auth/login",
        everyone(200),
        body={"username": "viewer", "password": PASSWORD},
    ),
    Case("POST", "/auth/logout", "/auth/logout", users_only(200)),
    Case("GET", "/auth/me", "/auth/me", users_only(200)),
    Case("POST", "/auth/ticket", "/auth/ticket", users_only(200)),
    # A wrong current password: users get past authentication to the 403 of the check itself.
    Case(
        "POST",
        "/auth/password",
        "/auth/password",
        users_only(403),
        body={"current_password": "wrong", "new_password": "another long password"},
    ),
    Case("GET", "/streams", "/streams", users_only(200)),
    Case("GET", "/streams/<topic>", "/streams/alerts", users_only(200), kind="sse"),
    Case("POST", "/streams/<topic>", "/streams/alerts", operators(201), body={"data": {"x": 1}}),
    Case("WS", "/ws", "/ws", users_only(101), kind="ws"),
    Case("GET", "/jobs", "/jobs", users_only(200)),
    Case("POST", "/jobs", "/jobs", operators(201), body={"kind": "system.sleep"}),
    Case("GET", "/jobs/<int:job_id>", "/jobs/999", users_only(404)),
    Case("POST", "/jobs/<int:job_id>/cancel", "/jobs/999/cancel", operators(404)),
    Case("GET", "/events", "/events", users_only(200)),
    Case("POST", "/events", "/events", operators(201), body={"type": "probe", "source": "matrix"}),
    Case("GET", "/events/<event_id>", "/events/none", users_only(404)),
    Case("GET", "/api/alerts/", "/api/alerts", users_only(200)),
    Case(
        "POST",
        "/api/alerts/",
        "/api/alerts",
        operators(201),
        body={"event_code": "RWT", "message": "Weekly test", "severity": "minor", "areas": []},
    ),
    Case("GET", "/api/alerts/<int:alert_id>", "/api/alerts/999", users_only(404)),
    Case(
        "PATCH",
        "/api/alerts/<int:alert_id>",
        "/api/alerts/999",
        operators(404),
        body={"message": "x"},
    ),
    Case("DELETE", "/api/alerts/<int:alert_id>", "/api/alerts/999", operators(404)),
    Case("GET", "/api/settings/", "/api/settings", users_only(200)),
    Case("GET", "/api/settings/<key>", "/api/settings/site_name", users_only(200)),
    Case(
        "PUT",
        "/api/settings/<key>",
        "/api/settings/site_name",
        {"anonymous": 401, "viewer": 403, "operator": 403, "admin": 200},
        body={"value": "Royal"},
    ),
    Case("GET", "/api/system/", "/api/system", users_only(200)),
    # Agent sessions belong to their user: an unknown (or someone else's) session is 404 for
    # every role; tests/test_agents_api.py checks the "someone else's" case on every route.
    Case("POST", "/agents/session", "/agents/session", users_only(201)),
    Case(
        "POST",
        "/agents/message",
        "/agents/message",
        users_only(404),
        body={"session_id": "none", "role": "user", "content": "hello"},
    ),
    Case("GET", "/agents/stream", "/agents/stream?session_id=none", users_only(404)),
    Case("GET", "/agents/sessions", "/agents/sessions", users_only(200)),
    Case(
        "GET",
        "/agents/sessions/<session_id>/messages",
        "/agents/sessions/none/messages",
        users_only(404),
    ),
    Case(
        "POST",
        "/agents/sessions/<session_id>/cancel",
        "/agents/sessions/none/cancel",
        users_only(404),
    ),
    Case("GET", "/v1/models", "/v1/models", users_only(200)),
    Case("GET", "/metrics", "/metrics", users_only(200)),
    Case("GET", "/metrics/prometheus", "/metrics/prometheus", users_only(200)),
    Case("GET", "/v1/<not_offered:path>", "/v1/files", users_only(404)),
    Case("POST", "/v1/<not_offered:path>", "/v1/embeddings", users_only(404), body={}),
    Case(
        "POST",
        "/v1/chat/completions",
        "/v1/chat/completions",
        users_only(404),  # an unknown model, so no reply is generated
        body={"model": "none", "messages": [{"role": "user", "content": "hi"}]},
    ),
]


def test_the_matrix_covers_every_route(app: Quart) -> None:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = {"WS"} if rule.websocket else set(rule.methods or ()) - {"HEAD", "OPTIONS"}
        routes.update((method, str(rule)) for method in methods)
    assert routes == {(case.method, case.rule) for case in MATRIX}


async def status_of(client: Client, case: Case, headers: dict[str, str]) -> int:
    if case.kind == "ws":
        try:
            async with client.websocket(case.path, headers=headers) as ws:
                await ws.send(json.dumps({"type": "ping"}))
                assert json.loads(await asyncio.wait_for(ws.receive(), 5))["type"] == "pong"
        except WebsocketResponseError as refused:
            return refused.response.status_code
        return 101
    if case.kind == "sse":
        async with client.request(case.path, headers=headers) as connection:
            await connection.send_complete()
            await asyncio.wait_for(connection.receive(), 5)  # the first frame (or the error)
            status = connection.status_code
            await connection.disconnect()
        assert status is not None
        return status
    response = await client.open(case.path, method=case.method, headers=headers, json=case.body)
    return response.status_code


@pytest.mark.parametrize("case", MATRIX, ids=lambda c: f"{c.method} {c.path}")
async def test_route_answers_each_caller_as_declared(
    client: Client, db: Database, password_hash: str, case: Case
) -> None:
    for role in ROLES_TO_SEED:
        await users.insert_user(db, role, password_hash, role)  # type: ignore[arg-type]
    observed = {}
    for caller in CALLERS:
        headers = {}
        if caller != "anonymous":
            user = await users.select_user_by_name(db, caller)
            assert user is not None
            # A fresh token per call: logout and password checks must not spill into the next.
            token = (await tokens.issue_token(db, user.id, "access", 600)).token
            headers["Authorization"] = f"Bearer {token}"
        observed[caller] = await status_of(client, case, headers)
    assert observed == case.expected
