"""/api/alerts through the test client: roles, validation, paging, events and expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from royal import alerts_expiry
from royal.blueprints import alerts as alerts_bp
from royal.db import Database
from royal.services import alerts, settings
from royal.streams import log
from tests.conftest import bearer

NOT_FOUND = {"error": "Not Found", "status_code": 404, "code": "ALERT_NOT_FOUND"}


def wire(app: Quart) -> None:
    """Register the alerts area unless create_app already does (it is wired once)."""
    if "alerts" not in app.blueprints:
        app.register_blueprint(alerts_bp.bp, url_prefix="/api/alerts")
    alerts_expiry.init_app(app)


@pytest.fixture(name="app")
async def _app(make_app: Callable[..., Quart]) -> AsyncIterator[Quart]:
    app = make_app(ALERT_EXPIRY_CHECK_SECONDS=0.05)
    wire(app)
    async with app.test_app():
        yield app


def in_(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def alert_body(**fields: Any) -> dict[str, Any]:
    return {
        "event_code": "TOR",
        "message": "Tornado warning until 18:00",
        "severity": "severe",
        "areas": ["048113", "048085"],
        "expires_at": in_(600),
    } | fields


async def post_alert(client: Client, token: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/alerts", json=alert_body(**fields), headers=bearer(token))
    assert response.status_code == 201, await response.get_data()
    body: dict[str, Any] = await response.get_json()
    return body


async def alert_events(db: Database) -> list[tuple[str, Any]]:
    return [(e.event, orjson.loads(e.data)) for e in await log.read_since(db, 0, topics=["alerts"])]


async def test_an_operator_raises_an_alert(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    expires = in_(600)
    response = await client.post(
        "/api/alerts", json=alert_body(expires_at=expires), headers=bearer(tokens["operator"])
    )
    assert response.status_code == 201
    body = await response.get_json()
    assert response.headers["Location"] == f"/api/alerts/{body['id']}"
    assert body["event_code"] == "TOR" and body["severity"] == "severe"
    assert body["areas"] == ["048113", "048085"] and body["expired"] is False
    assert body["source"] is None and body["source_event_id"] is None
    assert datetime.fromisoformat(body["expires_at"]) == pytest.approx(
        datetime.fromisoformat(expires), abs=timedelta(milliseconds=1)
    )
    assert body["created_at"].endswith("Z") and body["created_at"] == body["updated_at"]
    operator_id = await db.fetch_val("SELECT id FROM users WHERE username = 'operator'")
    assert body["created_by"] == operator_id
    # The stream carries the same JSON, committed with the row.
    assert await alert_events(db) == [("alert.created", body)]
    fetched = await client.get(f"/api/alerts/{body['id']}", headers=bearer(tokens["viewer"]))
    assert fetched.status_code == 200 and await fetched.get_json() == body


async def test_without_an_expiry_the_default_ttl_setting_applies(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    body = alert_body()
    del body["expires_at"]
    created = await client.post("/api/alerts", json=body, headers=bearer(tokens["admin"]))
    expires = datetime.fromisoformat((await created.get_json())["expires_at"]).timestamp()
    assert expires == pytest.approx(time.time() + 3600, abs=5)
    await settings.set_setting(db, "alert_default_ttl_minutes", 5)
    created = await client.post("/api/alerts", json=body, headers=bearer(tokens["admin"]))
    expires = datetime.fromisoformat((await created.get_json())["expires_at"]).timestamp()
    assert expires == pytest.approx(time.time() + 300, abs=5)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/alerts"),
        ("POST", "/api/alerts"),
        ("GET", "/api/alerts/1"),
        ("PATCH", "/api/alerts/1"),
        ("DELETE", "/api/alerts/1"),
    ],
)
async def test_anonymous_callers_get_401(client: Client, method: str, path: str) -> None:
    response = await client.open(path, method=method, json={"message": "x"})
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "AUTHENTICATION_REQUIRED"


async def test_viewers_read_but_do_not_change(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    alert = await post_alert(client, tokens["operator"])
    viewer = bearer(tokens["viewer"])
    path = f"/api/alerts/{alert['id']}"
    assert (await client.get("/api/alerts", headers=viewer)).status_code == 200
    assert (await client.get(path, headers=viewer)).status_code == 200
    for response in (
        await client.post("/api/alerts", json=alert_body(), headers=viewer),
        await client.patch(path, json={"message": "changed"}, headers=viewer),
        await client.delete(path, headers=viewer),
    ):
        assert response.status_code == 403
        assert (await response.get_json())["code"] == "FORBIDDEN"
    assert [name for name, _ in await alert_events(db)] == ["alert.created"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"event_code": "tor"}, "event_code"),
        ({"event_code": "TO"}, "event_code"),
        ({"event_code": "TORN"}, "event_code"),
        ({"event_code": "TOR\n"}, "event_code"),
        ({"message": ""}, "message"),
        ({"message": "x" * 2001}, "message"),
        ({"severity": "catastrophic"}, "severity"),
        ({"areas": "048113"}, "areas"),
        ({"areas": [str(n) for n in range(101)]}, "areas"),
        ({"areas": [""]}, "areas.0"),
        ({"areas": ["x" * 33]}, "areas.0"),
        ({"areas": [48113]}, "areas.0"),
        ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"expires_at": in_(-60)}, "expires_at"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"event_code": None}, "event_code"),
        ({"source": "x" * 101}, "source"),
    ],
)
async def test_bad_alerts_are_400_naming_the_field(
    client: Client, db: Database, tokens: dict[str, str], fields: dict[str, Any], field: str
) -> None:
    response = await client.post(
        "/api/alerts", json=alert_body(**fields), headers=bearer(tokens["operator"])
    )
    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"] == "Bad Request" and body["status_code"] == 400
    assert field in [item["field"] for item in body["detail"]]
    assert await alerts.select_alerts(db, state="all") == []
    assert await alert_events(db) == []


async def test_missing_fields_and_malformed_json_are_400(
    client: Client, tokens: dict[str, str]
) -> None:
    operator = bearer(tokens["operator"])
    response = await client.post("/api/alerts", json={"message": "x"}, headers=operator)
    assert response.status_code == 400
    fields = {item["field"] for item in (await response.get_json())["detail"]}
    assert fields == {"event_code", "severity"}
    response = await client.post(
        "/api/alerts",
        data="{not json",
        headers={**operator, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert (await response.get_json())["error"] == "Malformed JSON body"


async def test_missing_alerts_are_json_404(client: Client, tokens: dict[str, str]) -> None:
    operator = bearer(tokens["operator"])
    for response in (
        await client.get("/api/alerts/999", headers=operator),
        await client.patch("/api/alerts/999", json={"message": "x"}, headers=operator),
        await client.delete("/api/alerts/999", headers=operator),
    ):
        assert response.status_code == 404
        assert await response.get_json() == NOT_FOUND
    response = await client.get("/api/alerts/not-a-number", headers=operator)
    assert response.status_code == 404 and (await response.get_json())["status_code"] == 404
    too_big = f"/api/alerts/{2**63}"  # beyond a 64-bit id: no such alert, not a 500 (nor 405)
    for response in (
        await client.get(too_big, headers=operator),
        await client.patch(too_big, json={"message": "x"}, headers=operator),
        await client.delete(too_big, headers=operator),
    ):
        assert response.status_code == 404


async def test_patch_changes_only_the_given_fields(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    alert = await post_alert(client, tokens["operator"])
    response = await client.patch(
        f"/api/alerts/{alert['id']}",
        json={"severity": "extreme", "areas": []},
        headers=bearer(tokens["admin"]),
    )
    assert response.status_code == 200
    body = await response.get_json()
    assert body["severity"] == "extreme" and body["areas"] == []
    unchanged = ("message", "event_code", "expires_at", "created_at", "created_by")
    assert {k: body[k] for k in unchanged} == {k: alert[k] for k in unchanged}
    assert body["updated_at"] >= alert["updated_at"]
    assert (await alert_events(db))[-1] == ("alert.updated", body)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({}, "body"),
        ({"message": None}, "message"),
        ({"severity": "bad"}, "severity"),
        ({"expires_at": "2030-01-01"}, "expires_at"),
        ({"areas": ["x" * 33]}, "areas.0"),
    ],
)
async def test_bad_patches_are_400(
    client: Client, db: Database, tokens: dict[str, str], patch: dict[str, Any], field: str
) -> None:
    alert = await post_alert(client, tokens["operator"])
    response = await client.patch(
        f"/api/alerts/{alert['id']}", json=patch, headers=bearer(tokens["operator"])
    )
    assert response.status_code == 400
    assert field in [item["field"] for item in (await response.get_json())["detail"]]
    assert len(await alert_events(db)) == 1


async def test_delete_is_204_with_an_empty_body(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    alert = await post_alert(client, tokens["operator"])
    path = f"/api/alerts/{alert['id']}"
    response = await client.delete(path, headers=bearer(tokens["operator"]))
    assert response.status_code == 204 and await response.get_data() == b""
    assert (await client.get(path, headers=bearer(tokens["viewer"]))).status_code == 404
    assert (await alert_events(db))[-1] == ("alert.deleted", {"id": alert["id"]})


async def test_the_list_shows_active_alerts_unless_asked(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    viewer = bearer(tokens["viewer"])
    minor = await post_alert(client, tokens["operator"], severity="minor")
    severe = await post_alert(client, tokens["operator"], severity="severe")
    ended = await alerts.create_alert(
        db, event_code="RWT", message="test", severity="minor", areas=[], expires_at=time.time()
    )

    async def ids(query: str) -> list[int]:
        response = await client.get(f"/api/alerts/{query}", headers=viewer)
        assert response.status_code == 200
        body = await response.get_json()
        assert body["next_cursor"] is None
        return [item["id"] for item in body["items"]]

    assert await ids("") == [severe["id"], minor["id"]]
    assert await ids("?state=active") == [severe["id"], minor["id"]]
    assert await ids("?state=expired") == [ended.id]
    assert await ids("?state=all") == [ended.id, severe["id"], minor["id"]]
    assert await ids("?state=all&severity=minor") == [ended.id, minor["id"]]
    assert await ids("?severity=extreme") == []
    # Ending an alert early moves it to the expired list.
    await client.patch(
        f"/api/alerts/{minor['id']}",
        json={"expires_at": datetime.now(UTC).isoformat()},
        headers=bearer(tokens["operator"]),
    )
    assert await ids("?state=expired") == [ended.id, minor["id"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=soon", "state"),
        ("severity=loud", "severity"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=many", "limit"),
    ],
)
async def test_bad_list_queries_are_400(
    client: Client, tokens: dict[str, str], query: str, field: str
) -> None:
    response = await client.get(f"/api/alerts?{query}", headers=bearer(tokens["viewer"]))
    assert response.status_code == 400
    assert [item["field"] for item in (await response.get_json())["detail"]] == [field]


@pytest.mark.parametrize(
    "cursor",
    [
        "bogus!",
        "djE6OTk5OTk5OTk5OTk5OTk5OTk5OTk",  # v1:99999999999999999999, beyond a 64-bit id
    ],
)
async def test_a_cursor_that_was_not_given_out_is_400(
    client: Client, tokens: dict[str, str], cursor: str
) -> None:
    response = await client.get(f"/api/alerts?cursor={cursor}", headers=bearer(tokens["viewer"]))
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "BAD_CURSOR"


async def test_pages_stay_stable_while_alerts_are_added(
    client: Client, tokens: dict[str, str]
) -> None:
    viewer = bearer(tokens["viewer"])
    before = [
        (await post_alert(client, tokens["operator"], message=f"m{n}"))["id"] for n in range(7)
    ]
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = await (await client.get(f"/api/alerts{query}", headers=viewer)).get_json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        await post_alert(client, tokens["operator"], message=f"meanwhile {pages}")
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(before, reverse=True) and pages == 3


async def test_expired_alerts_are_announced_once_by_the_background_task(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    alert = await post_alert(client, tokens["operator"], expires_at=in_(0.3))
    deadline = time.monotonic() + 5
    while not [data for name, data in await alert_events(db) if name == "alert.expired"]:
        assert time.monotonic() < deadline, "alert.expired did not come"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # several more rounds of the 0.05 s check
    expired = [data for name, data in await alert_events(db) if name == "alert.expired"]
    assert [data["id"] for data in expired] == [alert["id"]] and expired[0]["expired"] is True
    response = await client.get(f"/api/alerts/{alert['id']}", headers=bearer(tokens["viewer"]))
    assert (await response.get_json())["expired"] is True


async def test_init_app_wires_the_expiry_task_once(make_app: Callable[..., Quart]) -> None:
    app = make_app()
    alerts_expiry.init_app(app)
    wired = len(app.while_serving_gens)
    alerts_expiry.init_app(app)
    assert len(app.while_serving_gens) == wired
    assert app.extensions[alerts_expiry.EXTENSION] == 2.0  # the default check interval
