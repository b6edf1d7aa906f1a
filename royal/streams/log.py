"""The durable event log: the ``stream_events`` table is the source of truth and replay buffer.

An event's row id is its SSE ``id:``. Readers follow the log with ``read_since(last_id)``, so
ids must become visible in id order, or a reader that has seen id 7 would skip a 6 committed
later. SQLite's single writer gives that for free. On PostgreSQL every append first takes one
transaction-scoped advisory lock, so appends commit one at a time, in id order, and a
``pg_notify`` carrying the new id goes out with the commit to wake the dispatchers.

Because the lock is held until the *outer* transaction commits, append last in a transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from royal.json_provider import dumps_bytes

if TYPE_CHECKING:
    from royal.db import Database

NOTIFY_CHANNEL = "royal_events"
APPEND_LOCK_KEY = 0x726F79616C0001  # "royal" + 1: the advisory lock that orders appends
_COLUMNS = "id, topic, event, data, created_at"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    topic: str
    event: str
    data: str  # JSON text, serialised once and sent as is
    created_at: str  # ISO-8601 UTC with milliseconds and a Z, on both dialects


async def append(db: Database, topic: str, event: str, data: Any) -> StoredEvent:
    """Store one event; inside the caller's transaction it commits (or not) with it."""
    return (await append_many(db, [(topic, event, data)]))[0]


async def append_many(db: Database, items: Sequence[tuple[str, str, Any]]) -> list[StoredEvent]:
    """Store ``(topic, event, data)`` items in one statement; returned in id order."""
    if not items:
        return []
    if db.dialect != "postgres":
        return await _insert(db, items)  # one statement is atomic; the single writer orders ids
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(:key)", {"key": APPEND_LOCK_KEY})
        stored = await _insert(db, items)
        # One wake-up per transaction is enough: dispatchers read everything after their cursor.
        await db.execute(
            "SELECT pg_notify(:channel, :payload)",
            {"channel": NOTIFY_CHANNEL, "payload": str(stored[-1].id)},
        )
    return stored


# The rows travel as one JSON array of [topic, event, data] parameter: a statement with three
# parameters per row costs ~70 us a row to build and compile, ten times what SQLite needs to
# run it. Rows are inserted in array order, so ids follow the items.
_INSERT = {
    "sqlite": f"""INSERT INTO stream_events (topic, event, data)
                  SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                         json_extract(value, '$[2]')
                    FROM json_each(:rows)
                   ORDER BY key
               RETURNING {_COLUMNS}""",
    "postgres": f"""INSERT INTO stream_events (topic, event, data)
                    SELECT row ->> 0, row ->> 1, row ->> 2
                      FROM json_array_elements(CAST(:rows AS json)) WITH ORDINALITY AS t(row, n)
                     ORDER BY n
                 RETURNING {_COLUMNS}""",
}


async def _insert(db: Database, items: Sequence[tuple[str, str, Any]]) -> list[StoredEvent]:
    rows = [(topic, event, dumps_bytes(data).decode()) for topic, event, data in items]
    records = await db.fetch_all(_INSERT[db.dialect], {"rows": dumps_bytes(rows).decode()})
    return sorted((_event(record) for record in records), key=lambda e: e.id)


async def read_since(
    db: Database, after_id: int, *, topics: Collection[str] | None = None, limit: int = 1000
) -> list[StoredEvent]:
    """Events with ``id > after_id`` (only ``topics`` when given), oldest first, at most limit."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    values: dict[str, Any] = {"after_id": after_id, "limit": limit}
    topic_filter = ""
    if topics is not None:
        if not topics:
            return []
        names = [f"topic{n}" for n in range(len(topics))]
        values.update(zip(names, topics, strict=True))
        topic_filter = f"AND topic IN ({', '.join(':' + name for name in names)})"
    records = await db.fetch_all(
        f"""SELECT {_COLUMNS}
              FROM stream_events
             WHERE id > :after_id {topic_filter}
             ORDER BY id
             LIMIT :limit""",
        values,
    )
    return [_event(record) for record in records]


async def latest_id(db: Database) -> int:
    """The newest stored id, 0 when the log is empty: a new subscriber's starting cursor."""
    return int(await db.fetch_val("SELECT coalesce(max(id), 0) FROM stream_events"))


async def oldest_id(db: Database) -> int | None:
    """The oldest id still stored: a resume from before it has lost events to retention."""
    value = await db.fetch_val("SELECT min(id) FROM stream_events")
    return None if value is None else int(value)


def _event(record: Any) -> StoredEvent:
    created_at = record["created_at"]
    if isinstance(created_at, datetime):  # asyncpg returns timestamptz as an aware datetime
        created_at = created_at.astimezone(UTC).isoformat(timespec="milliseconds")
        created_at = created_at.replace("+00:00", "Z")
    return StoredEvent(
        id=int(record["id"]),
        topic=record["topic"],
        event=record["event"],
        data=record["data"],
        created_at=created_at,
    )
