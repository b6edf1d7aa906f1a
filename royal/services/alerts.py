"""Alerts: EAS/CAP-style messages that stay active until they expire.

Every change publishes on the ``alerts`` topic in the same transaction, so the stream and the
table never disagree; callers wake the broker after the commit. An alert leaves the active
list by itself when ``expires_at`` passes; ``announce_expired`` then publishes
``alert.expired`` for it exactly once, however many processes call it at the same time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson

from royal.json_provider import dumps_bytes
from royal.services import settings
from royal.streams import log

if TYPE_CHECKING:
    from royal.db import Database

Severity = Literal["extreme", "severe", "moderate", "minor", "unknown"]
SEVERITIES: tuple[Severity, ...] = ("extreme", "severe", "moderate", "minor", "unknown")
State = Literal["active", "expired", "all"]
TOPIC = "alerts"
CHANGEABLE = frozenset({"message", "severity", "areas", "expires_at"})

_COLUMNS = """id, event_code, message, severity, areas, expires_at, source, source_event_id,
    expired_announced, created_by, created_at, updated_at"""


@dataclass(frozen=True)
class Alert:
    id: int
    event_code: str
    message: str
    severity: Severity
    areas: list[str]
    expires_at: float
    source: str | None
    source_event_id: str | None
    expired_announced: bool
    created_by: int | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Any) -> Alert:
        values = dict(row._mapping)
        values["areas"] = orjson.loads(values["areas"])
        values["expired_announced"] = bool(values["expired_announced"])
        return cls(**values)

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """The alert as the API and the ``alerts`` stream show it: times as ISO-8601 UTC."""
        now = time.time() if now is None else now
        return {
            "id": self.id,
            "event_code": self.event_code,
            "message": self.message,
            "severity": self.severity,
            "areas": self.areas,
            "expires_at": iso(self.expires_at),
            "expired": self.expires_at <= now,
            "source": self.source,
            "source_event_id": self.source_event_id,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


def iso(epoch: float) -> str:
    """ISO-8601 UTC with milliseconds and a Z, like the stream's ``created_at``."""
    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


async def _published(db: Database, row: Any, event: str) -> Alert:
    alert = Alert.from_row(row)
    await log.append(db, TOPIC, event, alert.to_json())
    return alert


async def create_alert(
    db: Database,
    *,
    event_code: str,
    message: str,
    severity: Severity,
    areas: Sequence[str],
    expires_at: float | None,
    source: str | None = None,
    source_event_id: str | None = None,
    created_by: int | None = None,
    default_ttl_seconds: float | None = None,
) -> Alert:
    """Store an alert and publish ``alert.created``.

    No expiry means now + ``default_ttl_seconds``, which defaults to the
    ``alert_default_ttl_minutes`` setting: the one place that rule lives.
    """
    if expires_at is None and default_ttl_seconds is None:
        default_ttl_seconds = int(await settings.get_setting(db, "alert_default_ttl_minutes")) * 60
    now = time.time()
    async with db.transaction():
        row = await db.fetch_one(
            f"""INSERT INTO alerts (event_code, message, severity, areas, expires_at, source,
                                    source_event_id, created_by, created_at, updated_at)
                     VALUES (:event_code, :message, :severity, :areas, :expires_at, :source,
                             :source_event_id, :created_by, :now, :now)
                  RETURNING {_COLUMNS}""",
            {
                "event_code": event_code,
                "message": message,
                "severity": severity,
                "areas": dumps_bytes(list(areas)).decode(),
                "expires_at": now + (default_ttl_seconds or 0)
                if expires_at is None
                else expires_at,
                "source": source,
                "source_event_id": source_event_id,
                "created_by": created_by,
                "now": now,
            },
        )
        return await _published(db, row, "alert.created")


async def select_alert(db: Database, alert_id: int) -> Alert | None:
    row = await db.fetch_one(f"SELECT {_COLUMNS} FROM alerts WHERE id = :id", {"id": alert_id})
    return None if row is None else Alert.from_row(row)


async def select_alerts(
    db: Database,
    *,
    state: State = "active",
    severity: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Alert]:
    """Newest first; fetches ``limit + 1`` so the caller knows whether another page exists.

    Active means ``expires_at`` is still in the future, so expiry needs no writer.
    """
    filters, values = ["1 = 1"], {"limit": limit + 1}
    if state != "all":
        filters.append("expires_at > :now" if state == "active" else "expires_at <= :now")
        values["now"] = time.time()  # type: ignore[assignment]
    if severity is not None:
        filters.append("severity = :severity")
        values["severity"] = severity  # type: ignore[assignment]
    if before_id is not None:
        filters.append("id < :before_id")
        values["before_id"] = before_id
    rows = await db.fetch_all(
        f"""SELECT {_COLUMNS} FROM alerts
             WHERE {" AND ".join(filters)}
             ORDER BY id DESC
             LIMIT :limit""",
        values,
    )
    return [Alert.from_row(row) for row in rows]


async def update_alert(db: Database, alert_id: int, changes: Mapping[str, Any]) -> Alert | None:
    """Change message, severity, areas or expires_at; publishes ``alert.updated``.

    Moving the expiry into the future re-arms ``alert.expired`` for the new time; moving it
    into the past ends the alert early (and it is announced as expired).
    """
    unknown = set(changes) - CHANGEABLE
    if not changes or unknown:
        raise ValueError(f"update_alert changes one of {sorted(CHANGEABLE)}, got {sorted(changes)}")
    now = time.time()
    values: dict[str, Any] = {"id": alert_id, "now": now}
    assignments = ["updated_at = :now"]
    for column in sorted(changes):
        value = changes[column]
        values[column] = dumps_bytes(list(value)).decode() if column == "areas" else value
        assignments.append(f"{column} = :{column}")
    if "expires_at" in changes and changes["expires_at"] > now:
        assignments.append("expired_announced = 0")
    async with db.transaction():
        row = await db.fetch_one(
            f"""UPDATE alerts SET {", ".join(assignments)}
                 WHERE id = :id
             RETURNING {_COLUMNS}""",
            values,
        )
        return None if row is None else await _published(db, row, "alert.updated")


async def count_active(db: Database) -> int:
    """How many alerts have not expired yet."""
    value = await db.fetch_val(
        "SELECT count(*) FROM alerts WHERE expires_at > :now", {"now": time.time()}
    )
    return int(value)


async def delete_alert(db: Database, alert_id: int) -> bool:
    """Delete an alert and publish ``alert.deleted`` (data: its id); False if there was none."""
    async with db.transaction():
        deleted = await db.fetch_val(
            "DELETE FROM alerts WHERE id = :id RETURNING id", {"id": alert_id}
        )
        if deleted is None:
            return False
        await log.append(db, TOPIC, "alert.deleted", {"id": alert_id})
        return True


async def announce_expired(db: Database) -> list[Alert]:
    """Publish ``alert.expired`` for each alert that expired and was not announced yet.

    The flag flips in one ``UPDATE ... RETURNING``: concurrent callers (other workers, other
    machines) each get a disjoint set of rows, so every expiry is announced exactly once.
    """
    now = time.time()
    # A read first: most calls find nothing, and a read never takes SQLite's write lock.
    due = await db.fetch_val(
        "SELECT 1 FROM alerts WHERE expired_announced = 0 AND expires_at <= :now LIMIT 1",
        {"now": now},
    )
    if due is None:
        return []
    async with db.transaction():
        rows = await db.fetch_all(
            f"""UPDATE alerts SET expired_announced = 1
                 WHERE expired_announced = 0 AND expires_at <= :now
             RETURNING {_COLUMNS}""",
            {"now": now},
        )
        expired = sorted((Alert.from_row(row) for row in rows), key=lambda alert: alert.id)
        await log.append_many(
            db, [(TOPIC, "alert.expired", alert.to_json(now)) for alert in expired]
        )
    return expired
