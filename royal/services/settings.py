"""Runtime settings: a typed registry of known keys, stored as JSON in the ``settings`` table.

Only registered keys exist. Each has a pydantic type with its constraints, a default and a
one-line description; a stored value overrides the default. Changes publish
``setting.changed`` on the ``system`` topic in the same transaction; callers wake the broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import Field, StringConstraints, TypeAdapter, ValidationError

from royal.json_provider import dumps_bytes
from royal.streams import log

if TYPE_CHECKING:
    from royal.db import Database

TOPIC = "system"


@dataclass(frozen=True)
class Setting:
    key: str
    adapter: TypeAdapter[Any]
    default: Any
    description: str
    schema: dict[str, Any]  # JSON Schema of the value, so a settings form can show the limits

    def validate(self, value: Any) -> Any:
        # Strict: JSON clients send 60, not "60" or true; a silent coercion would hide a bug.
        return self.adapter.validate_python(value, strict=True)


def _setting(key: str, type_: Any, default: Any, description: str) -> Setting:
    adapter: TypeAdapter[Any] = TypeAdapter(type_)
    default = adapter.validate_python(default)
    return Setting(key, adapter, default, description, adapter.json_schema())


REGISTRY: dict[str, Setting] = {
    setting.key: setting
    for setting in (
        _setting(
            "site_name",
            Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)],
            "Royal",
            "The name shown in the dashboard's title bar.",
        ),
        _setting(
            "alert_default_ttl_minutes",
            Annotated[int, Field(ge=1, le=10080)],
            60,
            "How long an alert stays active when it is created without an expiry.",
        ),
        _setting(
            "metrics_interval_seconds",
            Annotated[float, Field(ge=1, le=60)],
            5.0,
            "How often live metrics are published on the metrics topic.",
        ),
        _setting(
            "agent_grace_seconds",
            Annotated[int, Field(ge=0, le=600)],
            30,
            "How long an agent reply goes on after its last watcher left; then it is cancelled.",
        ),
    )
}


class UnknownSetting(LookupError):
    """No setting has this key."""


class InvalidSetting(ValueError):
    """A value that the setting's type refuses; ``error`` says why."""

    def __init__(self, key: str, error: ValidationError) -> None:
        super().__init__(f"Invalid value for setting {key!r}")
        self.key = key
        self.error = error


def lookup(key: str) -> Setting:
    try:
        return REGISTRY[key]
    except KeyError:
        raise UnknownSetting(key) from None


async def get_settings(db: Database) -> dict[str, Any]:
    """Every setting: the stored value, or the default when none is stored (or it no longer
    passes the key's constraints, e.g. after they were tightened)."""
    rows = await db.fetch_all("SELECT key, value FROM settings")
    stored = {row["key"]: row["value"] for row in rows}
    return {key: _effective(setting, stored.get(key)) for key, setting in REGISTRY.items()}


async def get_setting(db: Database, key: str) -> Any:
    setting = lookup(key)
    raw = await db.fetch_val("SELECT value FROM settings WHERE key = :key", {"key": key})
    return _effective(setting, raw)


def _effective(setting: Setting, raw: str | None) -> Any:
    if raw is None:
        return setting.default
    try:
        return setting.validate(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValidationError):
        return setting.default


async def set_setting(db: Database, key: str, value: Any) -> Any:
    """Validate and store a value; returns it as stored (e.g. 5 becomes 5.0 for a float)."""
    setting = lookup(key)
    try:
        value = setting.validate(value)
    except ValidationError as error:
        raise InvalidSetting(key, error) from None
    # An upsert's UPDATE branch gets no column default, and SQLite's strftime('%...') cannot be
    # written in the SQL (`databases` %-formats it): bind the time. PostgreSQL's TIMESTAMPTZ
    # takes a datetime, SQLite's TEXT the same ISO form as its default.
    now = datetime.now(UTC)
    updated_at: Any = now if db.dialect == "postgres" else _iso(now)
    async with db.transaction():
        await db.execute(
            """INSERT INTO settings (key, value, updated_at)
                    VALUES (:key, :value, :updated_at)
               ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                                               updated_at = excluded.updated_at""",
            {"key": key, "value": dumps_bytes(value).decode(), "updated_at": updated_at},
        )
        await log.append(db, TOPIC, "setting.changed", {"key": key, "value": value})
    return value


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
