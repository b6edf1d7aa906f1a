"""/api/settings through the test client: everyone reads, admins write, values are checked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from royal.blueprints import settings as settings_bp
from royal.db import Database
from royal.services import settings
from royal.streams import log
from tests.conftest import bearer

KEYS = ["site_name", "alert_default_ttl_minutes", "metrics_interval_seconds", "agent_grace_seconds"]


@pytest.fixture(name="app")
async def _app(make_app: Callable[..., Quart]) -> AsyncIterator[Quart]:
    app = make_app()
    if "settings" not in app.blueprints:  # until create_app registers it
        app.register_blueprint(settings_bp.bp, url_prefix="/api/settings")
    async with app.test_app():
        yield app


async def system_events(db: Database) -> list[tuple[str, Any]]:
    return [(e.event, orjson.loads(e.data)) for e in await log.read_since(db, 0, topics=["system"])]


async def put(client: Client, key: str, body: Any, token: str) -> Any:
    return await client.put(f"/api/settings/{key}", json=body, headers=bearer(token))


async def test_users_list_every_setting_with_its_default(
    client: Client, tokens: dict[str, str]
) -> None:
    for path in ("/api/settings", "/api/settings/"):
        response = await client.get(path, headers=bearer(tokens["viewer"]))
        assert response.status_code == 200
        items = (await response.get_json())["items"]
        assert [item["key"] for item in items] == KEYS
    ttl = items[1]
    assert ttl == {
        "key": "alert_default_ttl_minutes",
        "value": 60,
        "default": 60,
        "description": settings.REGISTRY["alert_default_ttl_minutes"].description,
        "value_schema": {"type": "integer", "minimum": 1, "maximum": 10080},
    }


async def test_one_setting(client: Client, tokens: dict[str, str]) -> None:
    response = await client.get("/api/settings/site_name", headers=bearer(tokens["viewer"]))
    assert response.status_code == 200
    body = await response.get_json()
    assert (body["key"], body["value"], body["default"]) == ("site_name", "Royal", "Royal")
    assert body["value_schema"] == {"type": "string", "minLength": 1, "maxLength": 80}


async def test_an_admin_changes_a_setting_and_system_hears_of_it(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    response = await put(client, "metrics_interval_seconds", {"value": 2}, tokens["admin"])
    assert response.status_code == 200
    body = await response.get_json()
    assert (body["key"], body["value"], body["default"]) == ("metrics_interval_seconds", 2.0, 5.0)
    got = await client.get(
        "/api/settings/metrics_interval_seconds", headers=bearer(tokens["viewer"])
    )
    assert (await got.get_json())["value"] == 2.0
    assert await system_events(db) == [
        ("setting.changed", {"key": "metrics_interval_seconds", "value": 2.0})
    ]


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_only_admins_change_settings(
    client: Client, db: Database, tokens: dict[str, str], role: str
) -> None:
    response = await put(client, "site_name", {"value": "Mine"}, tokens[role])
    assert response.status_code == 403
    assert (await response.get_json())["code"] == "FORBIDDEN"
    assert await settings.get_setting(db, "site_name") == "Royal"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/settings"), ("GET", "/api/settings/site_name"), ("PUT", "/api/settings/x")],
)
async def test_anonymous_callers_get_401(client: Client, method: str, path: str) -> None:
    response = await client.open(path, method=method, json={"value": 1})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("site_name", ""),
        ("site_name", "x" * 81),
        ("alert_default_ttl_minutes", 0),
        ("alert_default_ttl_minutes", "60"),
        ("alert_default_ttl_minutes", 1.5),
        ("metrics_interval_seconds", 61),
        ("agent_grace_seconds", None),
        ("agent_grace_seconds", [30]),
    ],
)
async def test_invalid_values_are_400_naming_the_key(
    client: Client, db: Database, tokens: dict[str, str], key: str, value: Any
) -> None:
    response = await put(client, key, {"value": value}, tokens["admin"])
    assert response.status_code == 400
    body = await response.get_json()
    assert body["code"] == "INVALID_SETTING" and body["status_code"] == 400
    assert key in body["error"]
    assert [item["field"] for item in body["detail"]] == [key]
    assert body["detail"][0]["loc"][0] == key and body["detail"][0]["msg"]
    assert await settings.get_settings(db) == {k: s.default for k, s in settings.REGISTRY.items()}
    assert await system_events(db) == []


async def test_a_body_without_value_is_400(client: Client, tokens: dict[str, str]) -> None:
    response = await put(client, "site_name", {"val": "x"}, tokens["admin"])
    assert response.status_code == 400
    assert [item["field"] for item in (await response.get_json())["detail"]] == ["value"]


async def test_unknown_settings_are_404(client: Client, tokens: dict[str, str]) -> None:
    expected = {"error": "Not Found", "status_code": 404, "code": "SETTING_NOT_FOUND"}
    response = await client.get("/api/settings/nope", headers=bearer(tokens["viewer"]))
    assert response.status_code == 404 and await response.get_json() == expected
    response = await put(client, "nope", {"value": 1}, tokens["admin"])
    assert response.status_code == 404 and await response.get_json() == expected
