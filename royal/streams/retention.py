"""Retention of the event log: delete old events, remember the highest id deleted.

Deleting by id (everything up to the newest expired event) keeps one watermark meaningful:
a resume from an id below it asks for events that are gone, and gets a ``reset`` event instead
of a silent gap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from royal.db import Database


async def deleted_through(db: Database) -> int:
    """The highest event id retention has deleted (0 before it ever ran)."""
    value = await db.fetch_val("SELECT deleted_through FROM stream_retention WHERE id = 1")
    return int(value or 0)


async def apply_retention(db: Database, max_age_seconds: float) -> int:
    """Delete events older than ``max_age_seconds``; returns how many were deleted."""
    async with db.transaction():
        if db.dialect == "postgres":
            newest_expired = await db.fetch_val(
                """SELECT max(id) FROM stream_events
                    WHERE created_at < now() - make_interval(secs => :seconds)""",
                {"seconds": float(max_age_seconds)},
            )
        else:
            # The format is bound, not inline: `databases` %-formats SQL text.
            newest_expired = await db.fetch_val(
                """SELECT max(id) FROM stream_events
                    WHERE created_at < strftime(:format, 'now', :modifier)""",
                {
                    "format": "%Y-%m-%dT%H:%M:%fZ",
                    "modifier": f"{-float(max_age_seconds):+.3f} seconds",
                },
            )
        if newest_expired is None:
            return 0
        deleted = await db.fetch_all(
            "DELETE FROM stream_events WHERE id <= :through RETURNING id",
            {"through": newest_expired},
        )
        await db.execute(
            """UPDATE stream_retention
                  SET deleted_through = :through
                WHERE id = 1 AND deleted_through < :through""",
            {"through": newest_expired},
        )
    return len(deleted)
