"""Built-in chores: ``maintenance.retention`` keeps growing tables in check; ``system.sleep``
is a harmless job for drills."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from royal.services import replies, tokens
from royal.streams import retention

if TYPE_CHECKING:
    from royal.jobs.registry import JobContext


async def run_retention_job(context: JobContext, payload: Any) -> dict[str, int]:
    """Delete stream events past STREAM_RETENTION_SECONDS and long-expired tokens; end agent
    replies whose worker died on their last attempt."""
    db = context.db
    events = await retention.apply_retention(db, context.config["STREAM_RETENTION_SECONDS"])
    expired_tokens = await tokens.delete_expired_tokens(db)
    orphans = await replies.end_orphaned_replies(db)
    if orphans:
        context.broker.wake()
    return {"stream_events": events, "tokens": expired_tokens, "orphaned_replies": orphans}


async def run_sleep_job(context: JobContext, payload: Any) -> dict[str, float]:
    """``system.sleep``: wait ``seconds`` (at most 600). A harmless job for smoke tests and
    drills: watch it move through /streams/jobs, kill its worker, see it run again."""
    seconds = min(max(float((payload or {}).get("seconds", 1.0)), 0.0), 600.0)
    await asyncio.sleep(seconds)
    return {"slept": seconds}
