"""Event ingestion: store once by id, publish on ``events``, process in an ``events.process`` job.

Idempotent by id: the first POST stores the event and queues its processing in one
transaction; a repeat (a retrying sender, two decoders hearing the same broadcast) gets the
first row back and changes nothing. Processing marks the event processed in the same
transaction as its effects, so a job that runs twice (its worker died after the work) applies
them once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from royal.json_provider import dumps_bytes
from royal.services import jobs
from royal.streams import log

if TYPE_CHECKING:
    from royal.db import Database

TOPIC = "events"
PROCESS_KIND = "events.process"
_COLUMNS = "seq, id, type, source, data, status, result, job_id, received_at, processed_at"


@dataclass(frozen=True)
class Event:
    seq: int
    id: str
    type: str
    source: str
    data: Any
    status: str
    result: Any
    job_id: int | None
    received_at: float
    processed_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> Event:
        values = dict(row._mapping)
        values["data"] = orjson.loads(values["data"])
        values["result"] = None if values["result"] is None else orjson.loads(values["result"])
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "source": self.source, "status": self.status}


async def ingest(
    db: Database, event_id: str | None, type_: str, source: str, data: Any
) -> tuple[Event, bool]:
    """Store and queue an event; returns (the event, whether it is new)."""
    event_id = event_id or str(uuid.uuid4())
    async with db.transaction():
        row = await db.fetch_one(
            f"""INSERT INTO events (id, type, source, data, status, received_at)
                     VALUES (:id, :type, :source, :data, 'received', :now)
                ON CONFLICT (id) DO NOTHING
                  RETURNING {_COLUMNS}""",
            {
                "id": event_id,
                "type": type_,
                "source": source,
                "data": dumps_bytes(data).decode(),
                "now": time.time(),
            },
        )
        if row is None:
            existing = await select_event(db, event_id)
            assert existing is not None
            return existing, False
        job = await jobs.enqueue(db, PROCESS_KIND, {"event_id": event_id})
        row = await db.fetch_one(
            f"UPDATE events SET job_id = :job_id WHERE id = :id RETURNING {_COLUMNS}",
            {"job_id": job.id, "id": event_id},
        )
        event = Event.from_row(row)
        await log.append(db, TOPIC, "event.received", event.summary())
    return event, True


async def mark_processed(db: Database, event_id: str, result: Any) -> Event | None:
    """Claim the processing of an event (inside the caller's transaction): None when another
    run already processed it, so its effects must not be applied again."""
    row = await db.fetch_one(
        f"""UPDATE events
               SET status = 'processed', result = :result, processed_at = :now
             WHERE id = :id AND status = 'received'
         RETURNING {_COLUMNS}""",
        {"id": event_id, "result": dumps_bytes(result).decode(), "now": time.time()},
    )
    if row is None:
        return None
    event = Event.from_row(row)
    await log.append(db, TOPIC, "event.processed", event.summary() | {"result": result})
    return event


async def select_event(db: Database, event_id: str) -> Event | None:
    row = await db.fetch_one(f"SELECT {_COLUMNS} FROM events WHERE id = :id", {"id": event_id})
    return None if row is None else Event.from_row(row)


async def select_events(
    db: Database,
    *,
    type_: str | None = None,
    source: str | None = None,
    before_seq: int | None = None,
    limit: int = 50,
) -> list[Event]:
    """Newest first; ``limit + 1`` rows so the caller knows whether another page exists."""
    filters, values = ["1 = 1"], {"limit": limit + 1}
    for column, value in (("type", type_), ("source", source), ("before_seq", before_seq)):
        if value is not None:
            filters.append(
                "seq < :before_seq" if column == "before_seq" else f"{column} = :{column}"
            )
            values[column] = value  # type: ignore[assignment]
    rows = await db.fetch_all(
        f"""SELECT {_COLUMNS} FROM events
             WHERE {" AND ".join(filters)}
             ORDER BY seq DESC
             LIMIT :limit""",
        values,
    )
    return [Event.from_row(row) for row in rows]
