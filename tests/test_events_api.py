"""POST /events: idempotent by id, processed once by an events.process job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from royal.db import Database
from royal.streams import log
from tests.conftest import bearer

ALERT = {
    "type": "alert",
    "source": "eas-decoder-1",
    "data": {
        "event_code": "TOR",
        "message": "Tornado warning",
        "severity": "severe",
        "areas": ["039035"],
    },
}


@pytest.fixture(name="app")
async def _app(make_app: Callable[..., Quart]) -> AsyncIterator[Quart]:
    async with (app := make_app(JOB_POLL_SECONDS=0.05)).test_app():
        yield app


async def processed(client: Client, headers: dict[str, str], event_id: str) -> dict[str, Any]:
    for _ in range(200):
        event: dict[str, Any] = await (
            await client.get(f"/events/{event_id}", headers=headers)
        ).get_json()
        if event["status"] == "processed":
            return event
        await asyncio.sleep(0.025)
    raise AssertionError(f"event {event_id} not processed: {event}")


async def test_an_alert_event_creates_one_alert(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    headers = bearer(tokens["operator"])
    first = await client.post("/events", headers=headers, json={"id": "eas-1", **ALERT})
    assert first.status_code == 201
    body = await first.get_json()
    assert body["id"] == "eas-1" and body["status"] == "received" and body["job_id"]
    repeat = await client.post("/events", headers=headers, json={"id": "eas-1", **ALERT})
    assert repeat.status_code == 200
    assert (await repeat.get_json())["job_id"] == body["job_id"]  # the first result, not a new job
    done = await processed(client, headers, "eas-1")
    alert_id = done["result"]["alert_id"]
    alerts = await db.fetch_all("SELECT id, event_code, source_event_id FROM alerts")
    assert [(row["id"], row["event_code"], row["source_event_id"]) for row in alerts] == [
        (alert_id, "TOR", "eas-1")
    ]
    published = [e.event for e in await log.read_since(db, 0, topics=["events", "alerts"])]
    assert published == ["event.received", "alert.created", "event.processed"]


async def test_concurrent_duplicates_are_stored_and_processed_once(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    headers = bearer(tokens["operator"])
    responses = await asyncio.gather(
        *(client.post("/events", headers=headers, json={"id": "dup", **ALERT}) for _ in range(20))
    )
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    await processed(client, headers, "dup")
    await asyncio.sleep(0.2)  # give a wrongly queued second job the time to run
    assert await db.fetch_val("SELECT count(*) FROM alerts") == 1
    assert await db.fetch_val("SELECT count(*) FROM jobs WHERE kind = 'events.process'") == 1


async def test_an_event_without_an_id_gets_one(client: Client, tokens: dict[str, str]) -> None:
    response = await client.post(
        "/events", headers=bearer(tokens["operator"]), json={"type": "heartbeat", "source": "probe"}
    )
    assert response.status_code == 201
    event = await response.get_json()
    assert len(event["id"]) == 36
    done = await processed(client, bearer(tokens["operator"]), event["id"])
    assert done["result"] == {"handled": False}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source": "x"}, "type"),
        ({"type": "alert"}, "source"),
        ({"type": "bad type!", "source": "x"}, "type"),
        (
            {"type": "alert", "source": "x", "data": {"event_code": "tor", "message": "m"}},
            "data.event_code",
        ),
        ({"type": "alert", "source": "x", "data": {"event_code": "TOR"}}, "data.message"),
        ({"type": "x", "source": "x", "data": [1]}, "data"),
    ],
)
async def test_bad_events_are_400_and_change_nothing(
    client: Client, db: Database, tokens: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = await client.post("/events", headers=bearer(tokens["operator"]), json=body)
    assert response.status_code == 400
    assert field in [item["field"] for item in (await response.get_json())["detail"]]
    assert await db.fetch_val("SELECT count(*) FROM events") == 0


async def test_list_filters_and_pages(client: Client, tokens: dict[str, str]) -> None:
    headers = bearer(tokens["operator"])
    for n in range(5):
        await client.post(
            "/events",
            headers=headers,
            json={"id": f"h{n}", "type": "heartbeat", "source": f"s{n % 2}"},
        )
    await client.post("/events", headers=headers, json={"id": "a", **ALERT})
    page = await (await client.get("/events?type=heartbeat&limit=2", headers=headers)).get_json()
    assert [e["id"] for e in page["items"]] == ["h4", "h3"] and page["next_cursor"]
    rest = await (
        await client.get(
            f"/events?type=heartbeat&limit=10&cursor={page['next_cursor']}", headers=headers
        )
    ).get_json()
    assert [e["id"] for e in rest["items"]] == ["h2", "h1", "h0"] and rest["next_cursor"] is None
    by_source = await (
        await client.get("/events?source=s0", headers=bearer(tokens["viewer"]))
    ).get_json()
    assert [e["id"] for e in by_source["items"]] == ["h4", "h2", "h0"]


async def test_roles(client: Client, tokens: dict[str, str]) -> None:
    assert (await client.post("/events", json=ALERT)).status_code == 401
    assert (
        await client.post("/events", headers=bearer(tokens["viewer"]), json=ALERT)
    ).status_code == 403
    assert (await client.get("/events", headers=bearer(tokens["viewer"]))).status_code == 200
    missing = await client.get("/events/nope", headers=bearer(tokens["viewer"]))
    assert missing.status_code == 404 and (await missing.get_json())["code"] == "EVENT_NOT_FOUND"
