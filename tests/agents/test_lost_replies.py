"""A worker lost mid-reply: the next attempt ends the reply as ``interrupted`` with the text
already streamed, and maintenance ends a reply whose job died on its last attempt. Both
dialects, real databases, the reply job run as the job runner runs it."""

from __future__ import annotations

import asyncio

import orjson

from royal.agents.deltas import DeltaWriter
from royal.agents.local import LocalBackend
from royal.agents.reply import Agents
from royal.config import Config
from royal.db import Database
from royal.jobs.registry import JobContext
from royal.services import agents, jobs, replies, users
from royal.streams import log
from royal.streams.broker import Broker
from royal.streams.topics import Topics


async def started_reply(database: Database) -> tuple[agents.Message, jobs.Job]:
    user = await users.insert_user(database, "ada", "not-a-hash", "viewer")
    session = await agents.create_session(database, user.id)
    _, reply = await agents.add_message(database, session, "user", "tell me about tea")
    assert reply is not None
    job = await jobs.claim(database, "worker-1", [agents.REPLY_KIND], lease_seconds=30)
    assert job is not None and job.payload == {"message_id": reply.id}
    return reply, job


async def topic_events(database: Database, reply: agents.Message) -> list[tuple[str, dict]]:
    rows = await log.read_since(database, 0, topics=[agents.topic(reply.session_id)])
    return [(row.event, orjson.loads(row.data)) for row in rows]


async def run_reply(database: Database, job: jobs.Job) -> dict[str, object]:
    broker = Broker(database, Topics([], []))
    writer = DeltaWriter(database, broker, interval=0.01)
    service = Agents(LocalBackend(database, token_seconds=0), writer, context_messages=50)
    context = JobContext(job, database, broker, vars(Config) | {})
    writing = asyncio.create_task(writer.run())
    try:
        return await service.reply_job(context, job.payload)
    finally:
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)


async def test_a_reply_runs_whole_when_nothing_was_streamed_yet(database: Database) -> None:
    reply, job = await started_reply(database)
    result = await run_reply(database, job)
    stored = await agents.select_message(database, reply.id)
    assert result["outcome"] == "complete" and stored is not None
    events = await topic_events(database, reply)
    assert [name for name, _ in events[:-1]] == ["message"] * (len(events) - 1)
    assert events[-1][0] == "done" and events[-1][1]["content"] == stored.content
    assert "".join(data["delta"] for _, data in events[:-1]) == stored.content


async def test_a_reply_whose_worker_died_mid_stream_ends_interrupted(database: Database) -> None:
    reply, job = await started_reply(database)
    topic = agents.topic(reply.session_id)
    # The first attempt streamed two deltas, then its worker vanished.
    for index, delta in enumerate(["You ", "asked: "]):
        await log.append(
            database, topic, "message", {"message_id": reply.id, "delta": delta, "index": index}
        )
    result = await run_reply(database, job)
    stored = await agents.select_message(database, reply.id)
    assert result == {"outcome": "interrupted"}
    assert stored is not None and stored.status == "failed" and stored.content == "You asked: "
    events = await topic_events(database, reply)
    assert events[-1] == (
        "error",
        {
            "message_id": reply.id,
            "code": "interrupted",
            "error": "The reply was interrupted.",
            "content": "You asked: ",
        },
    )
    assert len(events) == 3, "nothing generated twice"


async def test_maintenance_ends_a_reply_whose_job_ended_without_it(database: Database) -> None:
    reply, job = await started_reply(database)
    await replies.start_reply(database, reply.id)
    await log.append(
        database,
        agents.topic(reply.session_id),
        "message",
        {"message_id": reply.id, "delta": "Half ", "index": 0},
    )
    failed = await jobs.fail(database, job, "worker-1", "lost", retry_base_seconds=1)
    assert failed is not None and failed.status == "queued"  # attempts left: not an orphan yet
    assert await replies.end_orphaned_replies(database) == 0
    await database.execute("UPDATE jobs SET status = 'failed' WHERE id = :id", {"id": job.id})
    assert await replies.end_orphaned_replies(database) == 1
    assert await replies.end_orphaned_replies(database) == 0, "ended exactly once"
    stored = await agents.select_message(database, reply.id)
    assert stored is not None and (stored.status, stored.content) == ("failed", "Half ")
    assert (await topic_events(database, reply))[-1][1]["code"] == "interrupted"
