"""Agent replies from an OpenAI-compatible upstream, end to end over real sockets.

Royal runs in a real Hypercorn (``live_royal``) with ``AGENT_BACKEND=openai`` pointed at a
``FakeOpenAI`` in this process; the test reads the reply's SSE stream like a browser would.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from royal.streams.sse import ParsedEvent
from royal.testing import SSEClient
from tests.agents.fake_openai import FakeOpenAI
from tests.agents.live import AgentClient, StartRoyal, data, deltas

MODEL = "royal-test-model"
API_KEY = "sk-royal-test"
RESET_SECONDS = 1.0


def upstream_env(fake: FakeOpenAI) -> dict[str, str]:
    """Royal on the fake: small timeouts, one retry, a breaker that opens after 2 failures."""
    return {
        "ROYAL_AGENT_BACKEND": "openai",
        "ROYAL_AI_SERVICE_URL": fake.url,
        "ROYAL_AI_MODEL": MODEL,
        "ROYAL_AI_API_KEY": API_KEY,
        "ROYAL_AI_CONNECT_TIMEOUT_SECONDS": "1",
        "ROYAL_AI_READ_TIMEOUT_SECONDS": "0.5",
        "ROYAL_AI_RETRIES": "1",
        "ROYAL_AI_RETRY_BACKOFF_SECONDS": "0.05",
        "ROYAL_AI_BREAKER_FAILURES": "2",
        "ROYAL_AI_BREAKER_RESET_SECONDS": str(RESET_SECONDS),
    }


async def ask_and_read(agent: AgentClient, session_id: str, question: str) -> list[ParsedEvent]:
    """Ask, then read the reply's stream from its first token until it ends."""
    reply_id = (await agent.ask(session_id, question))["reply_id"]
    url = agent.stream_url(session_id, reply_id=reply_id)
    async with SSEClient(url, token=agent.token) as stream:
        events = await stream.read_until_closed(timeout=10)
    assert events and {data(event)["message_id"] for event in events} == {reply_id}
    return events


async def agent_check(agent: AgentClient) -> dict[str, Any]:
    """/readyz's ``agent`` check; /readyz must answer 200 whatever the breaker says."""
    response = await agent.http.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"
    check: dict[str, Any] = response.json()["checks"]["agent"]
    assert check["ok"] is True
    return check


async def test_a_reply_streams_from_the_upstream(live_royal: StartRoyal) -> None:
    async with FakeOpenAI(words=["Royal", "is", "a", "Quart", "app."], delay=0.01) as fake:
        live = await live_royal(env=upstream_env(fake))
        async with AgentClient(live) as agent:
            session_id = await agent.session()
            note = await agent.http.post(
                "/agents/message",
                json={"session_id": session_id, "role": "assistant", "content": "Ask away."},
            )
            assert note.status_code == 200
            events = await ask_and_read(agent, session_id, "What is Royal?")
            reply_id = data(events[-1])["message_id"]
            stored = await agent.message(session_id, reply_id)

    chunks = deltas(events)
    assert [chunk["index"] for chunk in chunks] == list(range(len(chunks)))
    assert "".join(chunk["delta"] for chunk in chunks) == fake.reply == "Royal is a Quart app."
    assert [event.event for event in events] == ["message"] * len(chunks) + ["done"]
    assert data(events[-1]) == {
        "message_id": reply_id,
        "content": fake.reply,
        "usage": fake.usage,
        "finish_reason": "stop",
    }
    assert stored["status"] == "complete" and stored["error"] is None
    assert stored["content"] == fake.reply and stored["usage"] == fake.usage

    (request,) = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body["model"] == MODEL and request.body["stream"] is True
    assert request.body["messages"] == [
        {"role": "assistant", "content": "Ask away."},
        {"role": "user", "content": "What is Royal?"},
    ]
    assert fake.completed == 1 and fake.disconnects == 0


async def test_a_failing_upstream_opens_the_circuit_then_recovers(
    live_royal: StartRoyal,
) -> None:
    async with FakeOpenAI(mode="fail") as fake:
        live = await live_royal(env=upstream_env(fake))
        async with AgentClient(live) as agent:
            assert (await agent_check(agent))["breaker"]["state"] == "closed"
            session_id = await agent.session()

            # Two attempts (one retry), both 500: the reply fails and the breaker opens.
            failed = await ask_and_read(agent, session_id, "First?")
            assert len(fake.requests) == 2
            assert [event.event for event in failed] == ["error"]
            assert data(failed[0])["code"] == "upstream_unavailable"
            assert data(failed[0])["content"] == ""
            stored = await agent.message(session_id, data(failed[0])["message_id"])
            assert (stored["status"], stored["error"]) == ("failed", "upstream_unavailable")
            assert stored["content"] == ""

            check = await agent_check(agent)  # shown, not failed
            assert check["degraded"] == "circuit_open"
            assert check["breaker"]["state"] == "open"
            assert check["breaker"]["consecutive_failures"] == 2

            # While open, a question fails at once without reaching the upstream.
            refused = await ask_and_read(agent, session_id, "Second?")
            assert [event.event for event in refused] == ["error"]
            assert data(refused[0])["code"] == "circuit_open"
            assert len(fake.requests) == 2

            # After the reset time one probe goes through; the upstream is healthy again.
            fake.mode = "stream"
            deadline = time.monotonic() + RESET_SECONDS + 5
            while (await agent_check(agent))["breaker"]["state"] != "half_open":
                assert time.monotonic() < deadline, "the breaker never became half-open"
                await asyncio.sleep(0.05)
            answered = await ask_and_read(agent, session_id, "Third?")
            assert answered[-1].event == "done"
            assert data(answered[-1])["content"] == fake.reply
            check = await agent_check(agent)

    assert len(fake.requests) == 3
    assert "degraded" not in check
    assert check["breaker"]["state"] == "closed"
    assert check["breaker"]["consecutive_failures"] == 0


async def test_an_upstream_that_hangs_after_the_first_token_times_out(
    live_royal: StartRoyal,
) -> None:
    async with FakeOpenAI(mode="hang_after_first") as fake:
        live = await live_royal(env=upstream_env(fake))
        async with AgentClient(live) as agent:
            session_id = await agent.session()
            events = await ask_and_read(agent, session_id, "Hello?")
            reply_id = data(events[-1])["message_id"]
            stored = await agent.message(session_id, reply_id)
            await fake.wait_for_disconnect(timeout=5)

    first = fake.words[0]
    assert "".join(chunk["delta"] for chunk in deltas(events)) == first
    assert events[-1].event == "error"
    end = data(events[-1])
    assert (end["code"], end["content"]) == ("upstream_timeout", first)
    assert (stored["status"], stored["error"], stored["content"]) == (
        "failed",
        "upstream_timeout",
        first,
    )
    assert len(fake.requests) == 1, "no retry once text was streamed"


async def test_cancelling_a_reply_hangs_up_on_the_upstream(live_royal: StartRoyal) -> None:
    words = [f"word{n}" for n in range(100)]
    async with FakeOpenAI(words=words, delay=0.1) as fake:
        live = await live_royal(env=upstream_env(fake))
        async with AgentClient(live) as agent:
            session_id = await agent.session()
            reply_id = (await agent.ask(session_id, "Count slowly."))["reply_id"]
            url = agent.stream_url(session_id, reply_id=reply_id)
            async with SSEClient(url, token=agent.token) as stream:
                events = await stream.read(2)
                cancelled = await agent.http.post(f"/agents/sessions/{session_id}/cancel")
                assert cancelled.status_code == 202, cancelled.text
                assert cancelled.json() == {"status": "cancelling", "message_id": reply_id}
                events += await stream.read_until_closed(timeout=5)
            await fake.wait_for_disconnect(timeout=5)
            stored = await agent.message(session_id, reply_id)

    assert (fake.disconnects, fake.completed, len(fake.requests)) == (1, 0, 1)
    text = "".join(chunk["delta"] for chunk in deltas(events))
    assert events[-1].event == "error"
    assert data(events[-1]) == {
        "message_id": reply_id,
        "code": "cancelled",
        "error": "The reply was cancelled.",
        "content": text,
    }
    assert (stored["status"], stored["error"], stored["content"]) == (
        "cancelled",
        "cancelled",
        text,
    )
    assert text and fake.reply.startswith(text) and text != fake.reply
