"""Agent replies over real sockets: Royal in a real Hypercorn, real HTTP and SSE clients.

The local backend streams word by word (AGENT_LOCAL_TOKEN_SECONDS apart), so a reply lasts
long enough to be interrupted, resumed, moved to another worker, abandoned or cancelled.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import httpx
import pytest

from royal.testing import SSEClient
from tests.agents.live import LONG_QUESTION, AgentClient, StartRoyal, data, deltas
from tests.streams.test_fanout_live import worker_stats

SLOW = {"ROYAL_AGENT_LOCAL_TOKEN_SECONDS": "0.05"}  # ~60 words: a 3 s reply
FRAME = re.compile(rb"id: (\d+)\nevent: (message|done|error)\ndata: (\{.*\})\n\n")


@pytest.fixture(
    name="database_url",
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
)
def _database_url(request: pytest.FixtureRequest) -> str | None:
    """None: the test's SQLite file; else a throwaway PostgreSQL database."""
    return request.getfixturevalue("postgres_url") if request.param == "postgres" else None


async def test_the_old_contract_byte_for_byte(
    live_royal: StartRoyal, database_url: str | None
) -> None:
    live = await live_royal(database_url=database_url)
    async with AgentClient(live) as agent:
        created = await agent.http.post("/agents/session")
        assert created.status_code == 201
        assert created.headers["content-type"] == "application/json"
        assert list(created.json()) == ["session_id"]
        session_id = created.json()["session_id"]
        assert str(uuid.UUID(session_id)) == session_id

        posted = await agent.http.post(
            "/agents/message",
            json={"session_id": session_id, "role": "user", "content": "What is the status?"},
        )
        assert posted.status_code == 200
        body = posted.json()
        assert body["status"] == "received" and isinstance(body["message_id"], int)
        reply_id = body["reply_id"]

        async with agent.http.stream(
            "GET", "/agents/stream", params={"session_id": session_id, "reply_id": reply_id}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            raw = b"".join([chunk async for chunk in response.aiter_raw()])  # it ends by itself

    assert raw.startswith(b"retry: 3000\n\n")
    frames = FRAME.findall(raw[len(b"retry: 3000\n\n") :])
    assert (
        b"".join(b"id: %s\nevent: %s\ndata: %s\n\n" % frame for frame in frames)
        == raw[len(b"retry: 3000\n\n") :]
    ), "only id/event/data frames, nothing in between"
    names = [name.decode() for _, name, _ in frames]
    assert names[-1] == "done" and set(names[:-1]) == {"message"}
    ids = [int(event_id) for event_id, _, _ in frames]
    assert ids == sorted(ids)
    chunks = [json.loads(payload) for _, _, payload in frames]
    assert [list(chunk) for chunk in chunks[:-1]] == [["message_id", "delta", "index"]] * (
        len(chunks) - 1
    )
    assert [chunk["index"] for chunk in chunks[:-1]] == list(range(len(chunks) - 1))
    assert {chunk["message_id"] for chunk in chunks} == {reply_id}
    text = "".join(chunk["delta"] for chunk in chunks[:-1])
    done = chunks[-1]
    assert done["content"] == text and done["finish_reason"] == "stop"
    assert text.startswith("Royal is up on ")
    assert done["usage"]["completion_tokens"] == len(text.split())
    assert done["usage"]["total_tokens"] == (
        done["usage"]["prompt_tokens"] + done["usage"]["completion_tokens"]
    )

    async with AgentClient(live) as agent:
        stored = await agent.message(session_id, reply_id)
    assert stored["status"] == "complete" and stored["content"] == text
    assert stored["usage"] == done["usage"] and stored["reply_to"] == body["message_id"]


async def test_a_reply_interrupted_three_times_resumes_exactly(
    live_royal: StartRoyal, database_url: str | None
) -> None:
    live = await live_royal(env=SLOW, database_url=database_url)
    async with AgentClient(live) as agent:
        session_id = await agent.session()
        reply_id = (await agent.ask(session_id))["reply_id"]
        stream = SSEClient(agent.stream_url(session_id, reply_id=reply_id), token=agent.token)
        received = []
        await stream.open()
        for _ in range(3):  # read a little, drop the connection mid-reply, come back
            received += await stream.read(3)
            await stream.resume()
        received += await stream.read_until_closed(timeout=20)
        await stream.close()
        stored = await agent.message(session_id, reply_id)

    chunks = deltas(received)
    assert [chunk["index"] for chunk in chunks] == list(range(len(chunks))), "no gap, no repeat"
    assert "".join(chunk["delta"] for chunk in chunks) == stored["content"]
    assert received[-1].event == "done" and data(received[-1])["content"] == stored["content"]
    assert stored["status"] == "complete" and LONG_QUESTION in stored["content"]


async def test_a_reply_resumes_on_the_other_worker(
    live_royal: StartRoyal, database_url: str | None
) -> None:
    live = await live_royal(
        workers=2, env={"ROYAL_AGENT_LOCAL_TOKEN_SECONDS": "0.2"}, database_url=database_url
    )
    async with AgentClient(live) as agent:
        session_id = await agent.session()
        reply_id = (await agent.ask(session_id))["reply_id"]
        url = agent.stream_url(session_id, reply_id=reply_id)
        first = await SSEClient(url, token=agent.token).open()
        received = await first.read(2)
        served_by = await _serving_worker(live)
        await first.close()
        await _serving_worker(live, opened=0)
        # New connections until one lands on the other worker. Both accept on one socket, so
        # the idler worker wins most races: it can take many tries.
        for _ in range(200):
            second = await SSEClient(url, token=agent.token, last_event_id=received[-1].id).open()
            if await _serving_worker(live) != served_by:
                break
            await second.close()
            await _serving_worker(live, opened=0)
            await asyncio.sleep(0.01)
        else:
            pytest.fail("never reached the other worker")
        received += await second.read_until_closed(timeout=20)
        await second.close()
        stored = await agent.message(session_id, reply_id)

    chunks = deltas(received)
    assert [chunk["index"] for chunk in chunks] == list(range(len(chunks)))
    assert "".join(chunk["delta"] for chunk in chunks) == stored["content"] != ""


async def _serving_worker(live: Any, opened: int = 1) -> set[int]:
    """The pids of workers with an open SSE stream, once exactly ``opened`` streams are open."""
    for _ in range(100):
        by_pid = await worker_stats(live, 2)
        open_on = {pid for pid, s in by_pid.items() if s["counters"]["sse_open"]}
        if sum(s["counters"]["sse_open"] for s in by_pid.values()) == opened:
            return open_on
        await asyncio.sleep(0.02)
    raise AssertionError("streams did not show up in the workers' counters")


async def test_an_abandoned_reply_is_cancelled_after_the_grace_period(
    live_royal: StartRoyal,
) -> None:
    live = await live_royal(env={**SLOW, "ROYAL_AGENT_PRESENCE_SECONDS": "0.2"})
    async with AgentClient(live, "admin") as agent:
        grace = await agent.http.put("/api/settings/agent_grace_seconds", json={"value": 1})
        assert grace.status_code == 200, grace.text
        session_id = await agent.session()
        reply_id = (await agent.ask(session_id))["reply_id"]
        async with SSEClient(
            agent.stream_url(session_id, reply_id=reply_id), token=agent.token
        ) as stream:
            first = await stream.read(2)
        # Nobody watches now: after ~1 s of grace the reply stops, keeping its partial text.
        stored = await agent.wait_for_status(session_id, reply_id, ("cancelled", "complete"))
        assert stored["status"] == "cancelled" and stored["error"] == "abandoned"
        async with SSEClient(
            agent.stream_url(session_id, reply_id=reply_id), token=agent.token
        ) as replay:
            events = await replay.read_until_closed()

    assert deltas(first) == deltas(events)[: len(deltas(first))]
    text = "".join(chunk["delta"] for chunk in deltas(events))
    assert stored["content"] == text and 0 < len(text) < len(LONG_QUESTION)
    assert events[-1].event == "error"
    assert data(events[-1]) == {
        "message_id": reply_id,
        "code": "abandoned",
        "error": "Nobody was watching the reply.",
        "content": text,
    }


async def test_a_watched_reply_outlives_the_grace_period(live_royal: StartRoyal) -> None:
    live = await live_royal(env={**SLOW, "ROYAL_AGENT_PRESENCE_SECONDS": "0.2"})
    async with AgentClient(live, "admin") as agent:
        await agent.http.put("/api/settings/agent_grace_seconds", json={"value": 1})
        session_id = await agent.session()
        reply_id = (await agent.ask(session_id))["reply_id"]
        async with SSEClient(
            agent.stream_url(session_id, reply_id=reply_id), token=agent.token
        ) as stream:
            events = await stream.read_until_closed(timeout=20)  # ~3 s: three grace periods
        stored = await agent.message(session_id, reply_id)
    assert events[-1].event == "done" and stored["status"] == "complete"


async def test_cancel_stops_a_running_reply_at_once(live_royal: StartRoyal) -> None:
    live = await live_royal(env=SLOW)
    async with AgentClient(live) as agent:
        session_id = await agent.session()
        reply_id = (await agent.ask(session_id))["reply_id"]
        async with SSEClient(
            agent.stream_url(session_id, reply_id=reply_id), token=agent.token
        ) as stream:
            events = await stream.read(2)
            cancelled = await agent.http.post(f"/agents/sessions/{session_id}/cancel")
            assert cancelled.status_code == 202, cancelled.text
            assert cancelled.json() == {"status": "cancelling", "message_id": reply_id}
            # The job lease is 30 s; the stop travels on the jobs topic, well within a second.
            events += await stream.read_until_closed(timeout=2)
        stored = await agent.message(session_id, reply_id)
        again = await agent.http.post(f"/agents/sessions/{session_id}/cancel")
        # The session is free again: a new question gets a new reply.
        assert (await agent.ask(session_id, "Any alerts?"))["reply_id"] > reply_id

    assert events[-1].event == "error" and data(events[-1])["code"] == "cancelled"
    assert stored["status"] == "cancelled"
    assert stored["content"] == "".join(chunk["delta"] for chunk in deltas(events))
    assert again.status_code == 409 and again.json()["code"] == "NOTHING_TO_CANCEL"


async def test_a_stream_opened_before_the_question_gets_the_reply(live_royal: StartRoyal) -> None:
    """The EventSource way: open the stream, then ask; follow=true keeps it for the next."""
    live = await live_royal()
    async with AgentClient(live) as agent:
        session_id = await agent.session()
        async with SSEClient(agent.stream_url(session_id, follow="true"), token=agent.token) as s:
            await asyncio.sleep(0.2)  # the subscription is in place
            first = (await agent.ask(session_id, "Any jobs?"))["reply_id"]
            events = []
            while not events or events[-1].event != "done":
                events += await s.read(1)
            second = (await agent.ask(session_id, "Any alerts?"))["reply_id"]
            more = []
            while not more or more[-1].event != "done":
                more += await s.read(1)
    assert {data(e)["message_id"] for e in events} == {first}
    assert {data(e)["message_id"] for e in more} == {second}
    assert data(more[-1])["content"] == "There are no open alerts."


async def test_a_second_question_waits_for_the_reply(live_royal: StartRoyal) -> None:
    live = await live_royal(env=SLOW)
    async with AgentClient(live) as agent:
        session_id = await agent.session()
        first = await agent.ask(session_id)
        busy = await agent.http.post(
            "/agents/message", json={"session_id": session_id, "role": "user", "content": "Hi"}
        )
        note = await agent.http.post(
            "/agents/message",
            json={"session_id": session_id, "role": "assistant", "content": "A note"},
        )
    assert busy.status_code == 409
    assert busy.json()["code"] == "REPLY_IN_PROGRESS"
    assert str(first["reply_id"]) in busy.json()["error"]
    assert note.status_code == 200 and note.json()["reply_id"] is None


async def test_a_reply_streams_on_the_generic_stream_and_the_websocket_too(
    live_royal: StartRoyal,
) -> None:
    live = await live_royal()
    async with AgentClient(live) as agent:
        session_id = await agent.session()
        reply_id = (await agent.ask(session_id, "Any alerts?"))["reply_id"]
        await agent.wait_for_status(session_id, reply_id, ("complete",))
        async with SSEClient(
            f"{live.url}/streams/agent:{session_id}", token=agent.token, last_event_id=0
        ) as stream:
            events = await stream.read(1)
            while events[-1].event != "done":
                events += await stream.read(1)
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as other:
            forbidden = await other.get(
                f"/streams/agent:{session_id}", headers=live.headers("other")
            )
            publish = await other.post(
                f"/streams/agent:{session_id}", json={"data": 1}, headers=live.headers("admin")
            )
    assert {e.event for e in events[:-1]} == {"message"}
    assert data(events[-1])["content"] == "There are no open alerts."
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "TOPIC_FORBIDDEN"
    assert publish.status_code == 403
