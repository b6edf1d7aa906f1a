"""The settings registry against real SQLite and PostgreSQL: validation, upsert, events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pytest

from royal.db import Database
from royal.services import settings
from royal.streams import log

DEFAULTS = {
    "site_name": "Royal",
    "alert_default_ttl_minutes": 60,
    "metrics_interval_seconds": 5.0,
    "agent_grace_seconds": 30,
}


async def system_events(db: Database) -> list[tuple[str, Any]]:
    return [(e.event, orjson.loads(e.data)) for e in await log.read_since(db, 0, topics=["system"])]


def test_every_setting_has_a_valid_default_and_a_description() -> None:
    assert {key: s.default for key, s in settings.REGISTRY.items()} == DEFAULTS
    for setting in settings.REGISTRY.values():
        assert setting.description and "\n" not in setting.description
        assert setting.validate(setting.default) == setting.default
        assert "type" in setting.schema


async def test_defaults_until_something_is_stored(database: Database) -> None:
    assert await settings.get_settings(database) == DEFAULTS
    assert await settings.get_setting(database, "site_name") == "Royal"


async def test_set_stores_and_publishes_in_the_same_transaction(database: Database) -> None:
    assert await settings.set_setting(database, "alert_default_ttl_minutes", 15) == 15
    assert await settings.get_setting(database, "alert_default_ttl_minutes") == 15
    assert (await settings.get_settings(database))["alert_default_ttl_minutes"] == 15
    assert await system_events(database) == [
        ("setting.changed", {"key": "alert_default_ttl_minutes", "value": 15})
    ]
    with pytest.raises(RuntimeError, match="abort"):
        async with database.transaction():
            await settings.set_setting(database, "alert_default_ttl_minutes", 20)
            raise RuntimeError("abort")
    assert await settings.get_setting(database, "alert_default_ttl_minutes") == 15
    assert len(await system_events(database)) == 1


async def test_set_twice_upserts_one_row_with_a_fresh_timestamp(database: Database) -> None:
    await settings.set_setting(database, "site_name", "First")
    first = await database.fetch_val("SELECT updated_at FROM settings WHERE key = 'site_name'")
    await settings.set_setting(database, "site_name", "Second")
    rows = await database.fetch_all("SELECT key, value, updated_at FROM settings")
    assert [(row["key"], row["value"]) for row in rows] == [("site_name", '"Second"')]
    updated = rows[0]["updated_at"]
    if isinstance(updated, str):  # SQLite keeps ISO text, PostgreSQL a timestamptz
        assert updated.endswith("Z")
        updated, first = datetime.fromisoformat(updated), datetime.fromisoformat(first)
    assert updated >= first


async def test_values_are_normalised(database: Database) -> None:
    assert await settings.set_setting(database, "metrics_interval_seconds", 2) == 2.0
    assert await settings.set_setting(database, "site_name", "  Ops room  ") == "Ops room"
    assert await settings.get_settings(database) == DEFAULTS | {
        "metrics_interval_seconds": 2.0,
        "site_name": "Ops room",
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("site_name", ""),
        ("site_name", "x" * 81),
        ("site_name", 5),
        ("alert_default_ttl_minutes", 0),
        ("alert_default_ttl_minutes", 10081),
        ("alert_default_ttl_minutes", "60"),
        ("alert_default_ttl_minutes", True),
        ("alert_default_ttl_minutes", 1.5),
        ("metrics_interval_seconds", 0.5),
        ("metrics_interval_seconds", 61),
        ("agent_grace_seconds", -1),
        ("agent_grace_seconds", None),
    ],
)
async def test_invalid_values_change_nothing(database: Database, key: str, value: Any) -> None:
    with pytest.raises(settings.InvalidSetting) as raised:
        await settings.set_setting(database, key, value)
    assert raised.value.key == key and key in str(raised.value)
    assert await settings.get_settings(database) == DEFAULTS
    assert await system_events(database) == []


async def test_unknown_keys_do_not_exist(database: Database) -> None:
    with pytest.raises(settings.UnknownSetting):
        await settings.get_setting(database, "nope")
    with pytest.raises(settings.UnknownSetting):
        await settings.set_setting(database, "nope", 1)
    assert await database.fetch_val("SELECT count(*) FROM settings") == 0


async def test_a_stored_value_that_no_longer_validates_reads_as_the_default(
    database: Database,
) -> None:
    for key, raw in (("agent_grace_seconds", "9999"), ("site_name", "not json")):
        await database.execute(
            "INSERT INTO settings (key, value) VALUES (:key, :value)", {"key": key, "value": raw}
        )
    assert await settings.get_settings(database) == DEFAULTS
    assert await settings.get_setting(database, "agent_grace_seconds") == 30
