"""The official `openai` SDK talking to Royal's /v1 over real sockets (Royal as its base URL,
a Royal token as its API key)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.agents.fake_openai import FakeOpenAI
from tests.agents.live import AgentClient, StartRoyal
from tests.conftest import LiveRoyal


def sdk(live: LiveRoyal, role: str = "viewer", **options: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{live.url}/v1", api_key=live.tokens[role], max_retries=0, **options
    )


async def test_the_sdk_streams_a_reply(live_royal: StartRoyal) -> None:
    live = await live_royal()
    async with sdk(live) as client:
        models = [model.id async for model in client.models.list()]
        assert models == ["royal-local"]
        stream = await client.chat.completions.create(
            model="royal-local",
            messages=[
                {"role": "system", "content": "You are Royal."},
                {"role": "user", "content": "Any alerts?"},
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]

    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    assert deltas[0].role == "assistant"
    assert "".join(delta.content or "" for delta in deltas) == "There are no open alerts."
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 5
    assert usage.total_tokens == usage.prompt_tokens + 5

    # The completion is an agent session like any other: its conversation is stored.
    async with AgentClient(live) as agent:
        (session,) = (await agent.http.get("/agents/sessions")).json()["items"]
        assert session["title"] == "chat.completions"
        stored = await agent.messages(session["session_id"])
    assert [(m["role"], m["content"], m["status"]) for m in reversed(stored)] == [
        ("system", "You are Royal.", "complete"),
        ("user", "Any alerts?", "complete"),
        ("assistant", "There are no open alerts.", "complete"),
    ]


async def test_the_sdk_gets_a_whole_completion(live_royal: StartRoyal) -> None:
    live = await live_royal()
    async with sdk(live) as client:
        completion = await client.chat.completions.create(
            model="royal-local", messages=[{"role": "user", "content": "How are the jobs?"}]
        )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content.startswith("The job queue has 0 queued")  # type: ignore[union-attr]
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 5


async def test_errors_are_the_exceptions_the_sdk_knows(live_royal: StartRoyal) -> None:
    live = await live_royal()
    messages = [{"role": "user", "content": "hi"}]
    async with openai.AsyncOpenAI(
        base_url=f"{live.url}/v1", api_key="not-a-token", max_retries=0
    ) as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.models.list()
    async with sdk(live) as client:
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(model="gpt-9", messages=messages)  # type: ignore[arg-type]
        assert missing.value.code == "model_not_found" and missing.value.param == "model"
        with pytest.raises(openai.BadRequestError) as last:
            await client.chat.completions.create(
                model="royal-local", messages=[{"role": "assistant", "content": "hi"}]
            )
        assert last.value.param == "messages"
        with pytest.raises(openai.BadRequestError) as empty:
            await client.chat.completions.create(model="royal-local", messages=[])
        assert empty.value.type == "invalid_request_error"
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers("viewer")) as http:
        raw = await http.post("/v1/chat/completions", json={"model": "royal-local"})
        malformed = await http.post(
            "/v1/chat/completions", content=b"{bad", headers={"Content-Type": "application/json"}
        )
        elsewhere = await http.post("/v1/embeddings", json={"input": "x"})
    assert malformed.status_code == 400
    assert malformed.json()["error"]["type"] == "invalid_request_error"
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "unknown_url"
    assert raw.status_code == 400
    assert raw.json() == {
        "error": {
            "message": "messages: Field required",
            "type": "invalid_request_error",
            "param": "messages",
            "code": None,
        }
    }


async def test_an_upstream_failure_mid_stream_raises_in_the_sdk(live_royal: StartRoyal) -> None:
    """Royal in front of another OpenAI-compatible server: its failure reaches the SDK as an
    APIError from the stream, not as a silently short answer."""
    async with FakeOpenAI(mode="hang_after_first", words=["Partial", "answer"]) as fake:
        live = await live_royal(
            env={
                "ROYAL_AGENT_BACKEND": "openai",
                "ROYAL_AI_SERVICE_URL": fake.url,
                "ROYAL_AI_MODEL": "fake-model",
                "ROYAL_AI_READ_TIMEOUT_SECONDS": "0.5",
            }
        )
        async with sdk(live) as client:
            stream = await client.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            received = []
            with pytest.raises(openai.APIError) as failed:
                async for chunk in stream:
                    received.append(chunk.choices[0].delta.content)
    assert received == ["Partial"]
    assert "upstream" in failed.value.message.lower() or "timeout" in failed.value.message.lower()
    assert len(fake.requests) == 1
