"""An agent reply's life after it was queued: started, streamed, ended exactly once.

The reply's text travels as ``message`` events on the session's topic; ``finish_reply`` writes
the whole text to the message row in the same transaction as the final ``done`` or ``error``
event, and only if the reply had not ended already. Cancel, a worker lost mid-reply and
maintenance all end replies through it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from royal.json_provider import dumps_bytes
from royal.services import jobs
from royal.services.agents import MESSAGE_COLUMNS, Message, Status, reply_in_progress, topic
from royal.streams import log

if TYPE_CHECKING:
    from royal.db import Database


class NothingToCancel(Exception):
    """The session has no reply in progress."""


async def start_reply(db: Database, message_id: int) -> Message | None:
    """Mark a reply ``streaming`` (its job began); None if it already ended (cancelled)."""
    row = await db.fetch_one(
        f"""UPDATE agent_messages SET status = 'streaming', updated_at = :now
             WHERE id = :id AND status IN ('pending', 'streaming')
         RETURNING {MESSAGE_COLUMNS}""",
        {"id": message_id, "now": time.time()},
    )
    return None if row is None else Message.from_row(row)


async def emitted_deltas(db: Database, reply: Message) -> list[str]:
    """The deltas of ``reply`` already in the log (a previous attempt's), in order."""
    rows = await db.fetch_all(
        """SELECT data FROM stream_events
            WHERE topic = :topic AND id > :after AND event = 'message'
            ORDER BY id""",
        {"topic": topic(reply.session_id), "after": reply.stream_after},
    )
    deltas = (orjson.loads(row["data"]) for row in rows)
    return [delta["delta"] for delta in deltas if delta.get("message_id") == reply.id]


async def finish_reply(
    db: Database,
    reply: Message,
    status: Status,
    content: str,
    event: str,
    data: dict[str, Any],
    *,
    usage: dict[str, int] | None = None,
    error: str | None = None,
) -> Message | None:
    """End a reply: its final text and status, and the final event, in one transaction.

    None (and no event) when the reply had already ended, so it ends exactly once.
    """
    async with db.transaction():
        row = await db.fetch_one(
            f"""UPDATE agent_messages
                   SET status = :status, content = :content, usage = :usage, error = :error,
                       updated_at = :now
                 WHERE id = :id AND status IN ('pending', 'streaming')
             RETURNING {MESSAGE_COLUMNS}""",
            {
                "id": reply.id,
                "status": status,
                "content": content,
                "usage": None if usage is None else dumps_bytes(usage).decode(),
                "error": error,
                "now": time.time(),
            },
        )
        if row is None:
            return None
        await log.append(db, topic(reply.session_id), event, data)
        return Message.from_row(row)


def error_event(reply: Message, code: str, message: str, content: str) -> dict[str, Any]:
    """The data of an ``error`` event: why the reply ended, and the text it had by then."""
    return {"message_id": reply.id, "code": code, "error": message, "content": content}


async def cancel_reply(db: Database, session_id: str) -> tuple[str, Message]:
    """Stop the session's reply. Returns ("cancelled", reply) when it had not started (it ends
    here), ("cancelling", reply) when its worker was asked to stop (it stores the partial
    text and sends the final event itself). Raises NothingToCancel."""
    reply = await reply_in_progress(db, session_id)
    if reply is None or reply.job_id is None:
        raise NothingToCancel(session_id)
    try:
        job = await jobs.cancel(db, reply.job_id)
    except (jobs.JobNotFound, jobs.JobFinished):
        job = None  # the job is gone or over, but the reply never ended: end it here
    if job is not None and job.status != "cancelled":
        return "cancelling", reply
    data = error_event(reply, "cancelled", "The reply was cancelled.", "")
    finished = await finish_reply(db, reply, "cancelled", "", "error", data, error="cancelled")
    return "cancelled", finished or reply


async def end_orphaned_replies(db: Database) -> int:
    """Fail replies whose job ended without ending them (its last worker died mid-reply), so
    their streams get a final ``error`` event. Returns how many were ended."""
    rows = await db.fetch_all(
        f"""SELECT {", ".join("m." + c.strip() for c in MESSAGE_COLUMNS.split(","))}
              FROM agent_messages m JOIN jobs j ON j.id = m.job_id
             WHERE m.status IN ('pending', 'streaming')
               AND j.status IN ('succeeded', 'failed', 'cancelled')"""
    )
    ended = 0
    for row in rows:
        reply = Message.from_row(row)
        partial = "".join(await emitted_deltas(db, reply))
        data = error_event(reply, "interrupted", "The worker generating it stopped.", partial)
        if await finish_reply(db, reply, "failed", partial, "error", data, error="interrupted"):
            ended += 1
    return ended
