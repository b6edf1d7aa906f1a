"""Agent sessions and their messages: the conversations of the old chat app, owned by users.

A user message and the reply it asks for are written together: the user's message, an
assistant message in ``pending`` and the ``agent.reply`` job that will fill it, in one
transaction. A session has at most one reply in progress (a partial unique index says so).
The reply's text travels as events on the session's topic; the message row gets the whole
text when the reply ends (``replies.finish_reply``), in the same transaction as the final event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson

from royal.services import jobs
from royal.streams import log

if TYPE_CHECKING:
    from royal.db import Database

REPLY_KIND = "agent.reply"
TOPIC_PREFIX = "agent"
REPLY_MAX_ATTEMPTS = 3  # a worker lost before the first token: the reply starts again elsewhere

Role = Literal["system", "user", "assistant"]
Status = Literal["complete", "pending", "streaming", "cancelled", "failed"]
IN_PROGRESS: tuple[Status, ...] = ("pending", "streaming")

_SESSION_COLUMNS = "seq, id, user_id, title, created_at, updated_at, watched_at"
MESSAGE_COLUMNS = """id, session_id, role, content, status, reply_to, job_id, stream_after,
    usage, error, created_at, updated_at"""


def topic(session_id: str) -> str:
    """The durable topic a session's replies stream on."""
    return f"{TOPIC_PREFIX}:{session_id}"


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class Session:
    seq: int
    id: str
    user_id: int
    title: str | None
    created_at: float
    updated_at: float
    watched_at: float

    @classmethod
    def from_row(cls, row: Any) -> Session:
        return cls(**dict(row._mapping))

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "title": self.title,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class Message:
    id: int
    session_id: str
    role: Role
    content: str
    status: Status
    reply_to: int | None
    job_id: int | None
    stream_after: int
    usage: dict[str, int] | None
    error: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Any) -> Message:
        values = dict(row._mapping)
        values["usage"] = None if values["usage"] is None else orjson.loads(values["usage"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.id,
            "session_id": self.session_id,
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "reply_to": self.reply_to,
            "usage": self.usage,
            "error": self.error,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


class ReplyInProgress(Exception):
    """The session is still answering; ``message_id`` is the reply under way."""

    def __init__(self, message_id: int) -> None:
        super().__init__(f"reply {message_id} is still in progress")
        self.message_id = message_id


async def create_session(db: Database, user_id: int, title: str | None = None) -> Session:
    now = time.time()
    row = await db.fetch_one(
        f"""INSERT INTO agent_sessions (id, user_id, title, created_at, updated_at, watched_at)
                 VALUES (:id, :user_id, :title, :now, :now, :now)
              RETURNING {_SESSION_COLUMNS}""",
        {"id": str(uuid.uuid4()), "user_id": user_id, "title": title, "now": now},
    )
    return Session.from_row(row)


async def select_session(db: Database, session_id: str, user_id: int) -> Session | None:
    """The session if it exists and belongs to ``user_id`` (others' sessions do not exist)."""
    row = await db.fetch_one(
        f"SELECT {_SESSION_COLUMNS} FROM agent_sessions WHERE id = :id AND user_id = :user_id",
        {"id": session_id, "user_id": user_id},
    )
    return None if row is None else Session.from_row(row)


async def session_owner(db: Database, session_id: str) -> int | None:
    value = await db.fetch_val(
        "SELECT user_id FROM agent_sessions WHERE id = :id", {"id": session_id}
    )
    return None if value is None else int(value)


async def select_sessions(
    db: Database, user_id: int, *, before_seq: int | None = None, limit: int = 50
) -> list[Session]:
    """Newest first; fetches ``limit + 1`` so the caller knows whether another page exists."""
    query = f"SELECT {_SESSION_COLUMNS} FROM agent_sessions WHERE user_id = :owner"
    rows = await _newest_first(db, query, "seq", user_id, before_seq, limit)
    return [Session.from_row(row) for row in rows]


async def select_messages(
    db: Database, session_id: str, *, before_id: int | None = None, limit: int = 50
) -> list[Message]:
    """Newest first, ``limit + 1`` rows (see ``select_sessions``)."""
    query = f"SELECT {MESSAGE_COLUMNS} FROM agent_messages WHERE session_id = :owner"
    rows = await _newest_first(db, query, "id", session_id, before_id, limit)
    return [Message.from_row(row) for row in rows]


async def _newest_first(
    db: Database, query: str, key: str, owner: object, before: int | None, limit: int
) -> list[Any]:
    """One page of ``query`` (filtered by ``:owner``) below the cursor ``before``."""
    values: dict[str, Any] = {"owner": owner, "limit": limit + 1}
    if before is not None:
        query += f" AND {key} < :before"
        values["before"] = before
    return await db.fetch_all(f"{query} ORDER BY {key} DESC LIMIT :limit", values)


async def select_message(db: Database, message_id: int) -> Message | None:
    row = await db.fetch_one(
        f"SELECT {MESSAGE_COLUMNS} FROM agent_messages WHERE id = :id", {"id": message_id}
    )
    return None if row is None else Message.from_row(row)


async def conversation(db: Database, reply: Message, limit: int) -> list[Message]:
    """What the backend answers: the newest ``limit`` finished messages before ``reply``,
    oldest first (a cancelled or failed reply's partial text is left out)."""
    rows = await db.fetch_all(
        f"""SELECT {MESSAGE_COLUMNS} FROM agent_messages
             WHERE session_id = :session_id AND id < :id AND status = 'complete'
             ORDER BY id DESC
             LIMIT :limit""",
        {"session_id": reply.session_id, "id": reply.id, "limit": limit},
    )
    return [Message.from_row(row) for row in reversed(rows)]


async def add_message(
    db: Database, session: Session, role: Role, content: str
) -> tuple[Message, Message | None]:
    """Store a message; a user message also queues the reply. Returns (message, reply).

    Raises ReplyInProgress for a user message while the session is still answering. The
    caller wakes the broker after this returns (the job and its event are committed).
    """
    now = time.time()
    async with db.transaction():
        # PostgreSQL: lock the session so two messages cannot both start a reply. SQLite has
        # one writer, and this transaction holds it.
        lock = " FOR UPDATE" if db.dialect == "postgres" else ""
        await db.fetch_val(
            f"SELECT seq FROM agent_sessions WHERE id = :id{lock}", {"id": session.id}
        )
        if role == "user":
            busy = await db.fetch_val(
                """SELECT id FROM agent_messages
                    WHERE session_id = :session_id AND status IN ('pending', 'streaming')""",
                {"session_id": session.id},
            )
            if busy is not None:
                raise ReplyInProgress(int(busy))
        message = await _insert_message(db, session.id, role, content, "complete", now)
        await db.execute(
            """UPDATE agent_sessions SET updated_at = :now, watched_at = :now WHERE id = :id""",
            {"id": session.id, "now": now},
        )
        if role != "user":
            return message, None
        reply = await _insert_message(
            db,
            session.id,
            "assistant",
            "",
            "pending",
            now,
            reply_to=message.id,
            stream_after=await log.latest_id(db),
        )
        job = await jobs.enqueue(
            db,
            REPLY_KIND,
            {"message_id": reply.id},
            max_attempts=REPLY_MAX_ATTEMPTS,
            created_by=session.user_id,
        )
        row = await db.fetch_one(
            f"""UPDATE agent_messages SET job_id = :job_id WHERE id = :id
             RETURNING {MESSAGE_COLUMNS}""",
            {"id": reply.id, "job_id": job.id},
        )
        return message, Message.from_row(row)


async def _insert_message(
    db: Database,
    session_id: str,
    role: Role,
    content: str,
    status: Status,
    now: float,
    *,
    reply_to: int | None = None,
    stream_after: int = 0,
) -> Message:
    row = await db.fetch_one(
        f"""INSERT INTO agent_messages (session_id, role, content, status, reply_to,
                                        stream_after, created_at, updated_at)
                 VALUES (:session_id, :role, :content, :status, :reply_to, :stream_after,
                         :now, :now)
              RETURNING {MESSAGE_COLUMNS}""",
        {
            "session_id": session_id,
            "role": role,
            "content": content,
            "status": status,
            "reply_to": reply_to,
            "stream_after": stream_after,
            "now": now,
        },
    )
    return Message.from_row(row)


async def reply_in_progress(db: Database, session_id: str) -> Message | None:
    row = await db.fetch_one(
        f"""SELECT {MESSAGE_COLUMNS} FROM agent_messages
             WHERE session_id = :session_id AND status IN ('pending', 'streaming')""",
        {"session_id": session_id},
    )
    return None if row is None else Message.from_row(row)


async def mark_watched(db: Database, session_ids: Sequence[str], now: float) -> None:
    """Record that streams were open on these sessions at ``now`` (presence, for the grace)."""
    for start in range(0, len(session_ids), 500):
        chunk = session_ids[start : start + 500]
        names = {f"s{n}": session_id for n, session_id in enumerate(chunk)}
        await db.execute(
            f"""UPDATE agent_sessions SET watched_at = :now
                 WHERE id IN ({", ".join(":" + name for name in names)})""",
            {**names, "now": now},
        )


async def watched_at(db: Database, session_id: str) -> float | None:
    value = await db.fetch_val(
        "SELECT watched_at FROM agent_sessions WHERE id = :id", {"id": session_id}
    )
    return None if value is None else float(value)


async def start_chat(
    db: Database, user_id: int, messages: Sequence[tuple[Role, str]], title: str | None = None
) -> tuple[Session, Message]:
    """A new session holding a whole conversation whose last message is the user's; returns
    the session and the reply it queued (the OpenAI-style API: stateless for the client)."""
    *history, (last_role, last_content) = messages
    if last_role != "user":
        raise ValueError("the last message must be the user's")
    now = time.time()
    async with db.transaction():
        session = await create_session(db, user_id, title)
        for role, content in history:
            await _insert_message(db, session.id, role, content, "complete", now)
        _, reply = await add_message(db, session, "user", last_content)
    assert reply is not None
    return session, reply


ACTIVE_SECONDS = 60.0  # a session is active this long after it was last watched or used


async def count_active_sessions(db: Database) -> int:
    """Sessions watched (or written to) in the last ACTIVE_SECONDS, across every process."""
    since = time.time() - ACTIVE_SECONDS
    value = await db.fetch_val(
        "SELECT count(*) FROM agent_sessions WHERE watched_at >= :since", {"since": since}
    )
    return int(value)
