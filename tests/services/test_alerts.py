"""Alerts against real SQLite and PostgreSQL: events in the same transaction, expiry, paging."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from typing import Any

import asyncpg
import orjson
import pytest

from royal.db import Database, connect_database
from royal.services import alerts, users
from royal.streams import log

DB_ERRORS = (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)


async def create(db: Database, **fields: Any) -> alerts.Alert:
    values: dict[str, Any] = {
        "event_code": "TOR",
        "message": "Tornado warning",
        "severity": "severe",
        "areas": ["048113"],
        "expires_at": time.time() + 600,
    } | fields
    return await alerts.create_alert(db, **values)


async def alert_events(db: Database) -> list[tuple[str, dict[str, Any]]]:
    return [
        (event.event, orjson.loads(event.data))
        for event in await log.read_since(db, 0, topics=["alerts"])
    ]


async def test_create_stores_the_alert_and_publishes_it_in_the_same_transaction(
    database: Database,
) -> None:
    expires = time.time() + 600
    alert = await create(database, expires_at=expires, source="decoder-1", source_event_id="e1")
    assert alert.id >= 1 and alert.event_code == "TOR" and alert.areas == ["048113"]
    assert alert.expires_at == pytest.approx(expires) and not alert.expired_announced
    assert (alert.source, alert.source_event_id) == ("decoder-1", "e1")
    assert alert.created_at == alert.updated_at == pytest.approx(time.time(), abs=5)
    assert await alerts.select_alert(database, alert.id) == alert
    [(name, data)] = await alert_events(database)
    assert name == "alert.created"
    assert data == alert.to_json() | {"expired": False}
    assert data["expires_at"].endswith("Z") and data["areas"] == ["048113"]

    with pytest.raises(RuntimeError, match="abort"):
        async with database.transaction():
            await create(database, message="rolled back")
            raise RuntimeError("abort")
    assert len(await alerts.select_alerts(database, state="all")) == 1
    assert len(await alert_events(database)) == 1


async def test_no_expiry_means_now_plus_the_default_ttl(database: Database) -> None:
    alert = await create(database, expires_at=None, default_ttl_seconds=90)
    assert alert.expires_at == pytest.approx(time.time() + 90, abs=5)


async def test_to_json_formats_times_as_iso_utc(database: Database) -> None:
    alert = await create(database, expires_at=1_700_000_000.5)
    out = alert.to_json()
    assert out["expires_at"] == "2023-11-14T22:13:20.500Z"
    assert out["expired"] is True


async def test_the_schema_refuses_bad_codes_and_severities(database: Database) -> None:
    for fields in ({"event_code": "tor"}, {"event_code": "TO"}, {"event_code": "TORN"}):
        with pytest.raises(DB_ERRORS):
            await create(database, **fields)
    with pytest.raises(DB_ERRORS):
        await create(database, severity="catastrophic")
    assert await alerts.select_alerts(database, state="all") == []
    assert await alert_events(database) == []


async def test_the_creator_may_be_deleted(database: Database) -> None:
    user = await users.insert_user(database, "op", "hash", "operator")
    alert = await create(database, created_by=user.id)
    assert alert.created_by == user.id
    await database.execute("DELETE FROM users WHERE id = :id", {"id": user.id})
    assert (await alerts.select_alert(database, alert.id)).created_by is None  # type: ignore[union-attr]


async def test_select_filters_by_state_and_severity_newest_first(database: Database) -> None:
    now = time.time()
    old = await create(database, expires_at=now - 60, severity="minor")
    active = await create(database, expires_at=now + 600, severity="severe")
    newer = await create(database, expires_at=now + 600, severity="minor")

    def ids(found: list[alerts.Alert]) -> list[int]:
        return [alert.id for alert in found]

    assert ids(await alerts.select_alerts(database)) == [newer.id, active.id]
    assert ids(await alerts.select_alerts(database, state="expired")) == [old.id]
    assert ids(await alerts.select_alerts(database, state="all")) == [newer.id, active.id, old.id]
    minor = await alerts.select_alerts(database, state="all", severity="minor")
    assert ids(minor) == [newer.id, old.id]
    assert await alerts.select_alerts(database, severity="extreme") == []


async def test_select_pages_with_limit_plus_one_and_before_id(database: Database) -> None:
    created = [await create(database, message=f"m{n}") for n in range(5)]
    first = await alerts.select_alerts(database, limit=2)
    assert [a.id for a in first] == [created[4].id, created[3].id, created[2].id]  # limit + 1
    rest = await alerts.select_alerts(database, before_id=created[3].id, limit=10)
    assert [a.id for a in rest] == [created[2].id, created[1].id, created[0].id]


async def test_update_changes_the_given_fields_and_publishes(database: Database) -> None:
    alert = await create(database)
    updated = await alerts.update_alert(
        database, alert.id, {"message": "Take shelter", "areas": ["048113", "048085"]}
    )
    assert updated is not None
    assert (updated.message, updated.areas) == ("Take shelter", ["048113", "048085"])
    assert (updated.severity, updated.expires_at) == (alert.severity, alert.expires_at)
    assert updated.updated_at >= alert.updated_at
    assert await alerts.select_alert(database, alert.id) == updated
    events = await alert_events(database)
    assert events[-1] == ("alert.updated", updated.to_json() | {"expired": False})


async def test_update_of_a_missing_alert_changes_nothing(database: Database) -> None:
    assert await alerts.update_alert(database, 999, {"message": "x"}) is None
    assert await alert_events(database) == []
    with pytest.raises(ValueError):
        await alerts.update_alert(database, 1, {"event_code": "EAN"})
    with pytest.raises(ValueError):
        await alerts.update_alert(database, 1, {})


async def test_delete_publishes_the_id(database: Database) -> None:
    alert = await create(database)
    assert await alerts.delete_alert(database, alert.id) is True
    assert await alerts.select_alert(database, alert.id) is None
    assert await alerts.delete_alert(database, alert.id) is False
    assert (await alert_events(database))[-1] == ("alert.deleted", {"id": alert.id})
    assert len(await alert_events(database)) == 2


async def test_announce_expired_announces_each_expiry_once(database: Database) -> None:
    now = time.time()
    gone = await create(database, expires_at=now - 1)
    await create(database, expires_at=now + 600)
    announced = await alerts.announce_expired(database)
    assert [a.id for a in announced] == [gone.id] and announced[0].expired_announced
    assert await alerts.announce_expired(database) == []
    expired = [data for name, data in await alert_events(database) if name == "alert.expired"]
    assert [data["id"] for data in expired] == [gone.id] and expired[0]["expired"] is True


async def test_moving_the_expiry_rearms_the_announcement(database: Database) -> None:
    alert = await create(database, expires_at=time.time() - 1)
    await alerts.announce_expired(database)
    await alerts.update_alert(database, alert.id, {"expires_at": time.time() + 0.2})
    assert await alerts.announce_expired(database) == []
    await asyncio.sleep(0.3)
    assert [a.id for a in await alerts.announce_expired(database)] == [alert.id]
    # Ending an alert early: moving the expiry into the past announces it (once) too.
    other = await create(database)
    await alerts.update_alert(database, other.id, {"expires_at": time.time() - 1})
    assert [a.id for a in await alerts.announce_expired(database)] == [other.id]
    names = Counter(name for name, _ in await alert_events(database))
    assert names["alert.expired"] == 3


async def test_concurrent_announcers_announce_each_alert_exactly_once(
    database: Database, database_url: str
) -> None:
    """Two processes (two separate pools) checking at the same moment never both announce."""
    past = time.time() - 1
    created = [await create(database, expires_at=past, message=f"m{n}") for n in range(40)]
    other = connect_database(database_url, DATABASE_POOL_SIZE=5)
    async with other:
        for _ in range(3):
            results = await asyncio.gather(
                alerts.announce_expired(database),
                alerts.announce_expired(other),
                alerts.announce_expired(database),
            )
            assert all(isinstance(result, list) for result in results)
    announced = Counter(
        data["id"] for name, data in await alert_events(database) if name == "alert.expired"
    )
    assert announced == Counter({alert.id: 1 for alert in created})
