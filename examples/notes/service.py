"""Notes: the domain operations, in raw SQL with bound parameters.

Nothing here imports Quart: every function takes the Database first and the owner's user id
explicitly, so the same code runs from a handler, the CLI, a job or a test. Every query is
scoped to its owner; "not yours" and "does not exist" are the same answer (None / False), so
the API cannot be used to find out which note ids exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from royal.db import Database

_COLUMNS = "id, owner_id, title, content, created_at"


@dataclass(frozen=True)
class Note:
    id: int
    owner_id: int
    title: str
    content: str
    created_at: float  # epoch seconds, as Royal's own tables store time

    @classmethod
    def from_row(cls, row: Any) -> Note:
        return cls(**row._mapping)

    @property
    def created_at_iso(self) -> str:
        """ISO-8601 UTC with milliseconds and a Z, as Royal's API shows times."""
        text = datetime.fromtimestamp(self.created_at, UTC).isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")


async def create_note(db: Database, owner_id: int, title: str, content: str) -> Note:
    row = await db.fetch_one(
        f"""INSERT INTO notes (owner_id, title, content, created_at)
                 VALUES (:owner_id, :title, :content, :now)
              RETURNING {_COLUMNS}""",
        {"owner_id": owner_id, "title": title, "content": content, "now": time.time()},
    )
    assert row is not None
    return Note.from_row(row)


async def select_notes(db: Database, owner_id: int) -> list[Note]:
    """The owner's notes, newest first."""
    rows = await db.fetch_all(
        f"SELECT {_COLUMNS} FROM notes WHERE owner_id = :owner_id ORDER BY id DESC",
        {"owner_id": owner_id},
    )
    return [Note.from_row(row) for row in rows]


async def select_note(db: Database, owner_id: int, note_id: int) -> Note | None:
    row = await db.fetch_one(
        f"SELECT {_COLUMNS} FROM notes WHERE id = :id AND owner_id = :owner_id",
        {"id": note_id, "owner_id": owner_id},
    )
    return None if row is None else Note.from_row(row)


async def delete_note(db: Database, owner_id: int, note_id: int) -> bool:
    """Delete the owner's note; False when there is no such note of theirs."""
    row = await db.fetch_one(
        "DELETE FROM notes WHERE id = :id AND owner_id = :owner_id RETURNING id",
        {"id": note_id, "owner_id": owner_id},
    )
    return row is not None
