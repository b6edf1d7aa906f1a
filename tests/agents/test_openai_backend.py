"""The OpenAI-compatible backend against a fake upstream on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from royal.agents.backend import BackendError, ChatMessage, Usage, estimate_tokens
from royal.agents.breaker import CircuitBreaker
from royal.agents.openai_backend import OpenAIBackend
from tests.agents.fake_openai import FakeOpenAI

MESSAGES = [
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "Say hello."),
]
MakeBackend = Callable[..., OpenAIBackend]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="fake")
async def _fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(name="make_backend")
async def _make_backend(fake: FakeOpenAI) -> AsyncIterator[MakeBackend]:
    """``make_backend(retries=2, ...)``: a backend on the fake with small timeouts."""
    backends: list[OpenAIBackend] = []

    def make(**overrides: Any) -> OpenAIBackend:
        options: dict[str, Any] = {
            "api_key": None,
            "connect_timeout": 1.0,
            "read_timeout": 0.3,
            "retries": 0,
            "retry_backoff": 0.01,
            "breaker": CircuitBreaker(5, 30.0),
        }
        options.update(overrides)
        url = options.pop("url", fake.url)
        backend = OpenAIBackend(url, "fake-model", **options)
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        await backend.aclose()


async def collect(backend: OpenAIBackend, text: list[str] | None = None) -> tuple[str, Usage]:
    """Run one reply; deltas also go into ``text`` so a test can see them after an error."""
    text = [] if text is None else text
    usages: list[Usage] = []
    async for item in backend.stream(MESSAGES):
        if isinstance(item, Usage):
            usages.append(item)
        else:
            assert not usages, "text after the usage"
            text.append(item)
    assert len(usages) == 1
    return "".join(text), usages[0]


async def expect_error(backend: OpenAIBackend, code: str, text: list[str] | None = None) -> None:
    with pytest.raises(BackendError) as caught:
        await collect(backend, text)
    assert caught.value.code == code, caught.value.message


async def test_streams_the_reply_and_the_upstream_usage(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    text, usage = await collect(make_backend())
    assert text == fake.reply == "Hello from the fake model."
    assert usage == Usage(11, 5)
    [request] = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.body == {
        "model": "fake-model",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello."},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert request.headers["accept"] == "text/event-stream"
    assert "authorization" not in request.headers


async def test_estimates_usage_when_the_upstream_sends_none(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    fake.send_usage = False
    text, usage = await collect(make_backend())
    prompt = "You are terse.\nSay hello."
    assert usage == Usage(estimate_tokens(prompt), estimate_tokens(text))


async def test_sends_the_api_key_as_a_bearer_token(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    await collect(make_backend(api_key="sk-test", url=fake.url + "/"))
    assert fake.requests[0].headers["authorization"] == "Bearer sk-test"
    assert fake.requests[0].path == "/v1/chat/completions"


async def test_silence_before_the_first_token_is_retried_then_times_out(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    fake.mode, fake.first_delay = "slow_first", 2.0
    backend = make_backend(retries=2)
    await expect_error(backend, "upstream_timeout")
    assert len(fake.requests) == 3
    await fake.wait_for_disconnect(3)  # each attempt hung up on the fake
    assert backend.breaker.status()["consecutive_failures"] == 3


async def test_silence_after_the_first_token_is_never_retried(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    fake.mode = "hang_after_first"
    text: list[str] = []
    await expect_error(make_backend(retries=2), "upstream_timeout", text)
    assert text == ["Hello"]  # the caller keeps what it already had
    assert len(fake.requests) == 1
    await fake.wait_for_disconnect()


async def test_a_dropped_connection_after_the_first_token_is_never_retried(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    fake.mode = "truncate"
    text: list[str] = []
    await expect_error(make_backend(retries=2), "upstream_unavailable", text)
    assert text == ["Hello"]
    assert len(fake.requests) == 1


async def test_a_server_error_is_retried_and_then_succeeds(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    fake.mode, fake.fail_count = "fail_then_stream", 2
    backend = make_backend(retries=2)
    text, _ = await collect(backend)
    assert text == fake.reply
    assert len(fake.requests) == 3
    assert backend.breaker.status()["consecutive_failures"] == 0


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_retryable_statuses_give_up_as_unavailable(
    fake: FakeOpenAI, make_backend: MakeBackend, status: int
) -> None:
    fake.mode, fake.fail_status = "fail", status
    await expect_error(make_backend(retries=1), "upstream_unavailable")
    assert len(fake.requests) == 2


async def test_a_bad_request_is_not_retried_nor_held_against_the_upstream(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    fake.mode = "bad_request"
    backend = make_backend(retries=2, breaker=CircuitBreaker(1, 30.0))
    with pytest.raises(BackendError) as caught:
        await collect(backend)
    assert caught.value.code == "upstream_error"
    assert "the request is invalid" in caught.value.message
    assert len(fake.requests) == 1
    assert backend.breaker.status()["state"] == "closed"


@pytest.mark.parametrize("mode", ["error_chunk", "garbage"])
async def test_an_error_chunk_or_garbage_is_an_upstream_error(
    fake: FakeOpenAI, make_backend: MakeBackend, mode: Any
) -> None:
    fake.mode = mode
    backend = make_backend(retries=2)
    await expect_error(backend, "upstream_error")
    assert len(fake.requests) == 1
    assert backend.breaker.status()["consecutive_failures"] == 1


async def test_a_closed_port_is_unavailable(make_backend: MakeBackend) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = make_backend(url=f"http://127.0.0.1:{port}/v1", retries=1)
    await expect_error(backend, "upstream_unavailable")
    assert backend.breaker.status()["consecutive_failures"] == 2


async def test_the_breaker_opens_then_a_successful_probe_closes_it(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    clock = FakeClock()
    backend = make_backend(breaker=CircuitBreaker(2, 10.0, clock=clock))
    fake.mode = "fail"
    await expect_error(backend, "upstream_unavailable")
    await expect_error(backend, "upstream_unavailable")
    await expect_error(backend, "circuit_open")
    assert len(fake.requests) == 2  # the open circuit did not even try
    with pytest.raises(BackendError) as caught:
        await backend.status()
    assert caught.value.code == "circuit_open"

    clock.now += 10
    assert (await backend.status())["breaker"]["state"] == "half_open"
    fake.mode = "stream"
    text, _ = await collect(backend)
    assert text == fake.reply
    assert len(fake.requests) == 3
    assert backend.breaker.status()["state"] == "closed"


async def test_a_failed_probe_opens_it_again(fake: FakeOpenAI, make_backend: MakeBackend) -> None:
    clock = FakeClock()
    backend = make_backend(breaker=CircuitBreaker(1, 10.0, clock=clock))
    fake.mode = "fail"
    await expect_error(backend, "upstream_unavailable")
    clock.now += 10
    await expect_error(backend, "upstream_unavailable")  # the probe
    assert backend.breaker.status()["opens"] == 2
    await expect_error(backend, "circuit_open")
    assert len(fake.requests) == 2


async def test_retries_stop_when_the_breaker_opens(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    fake.mode = "fail"
    backend = make_backend(retries=5, breaker=CircuitBreaker(2, 30.0))
    await expect_error(backend, "upstream_unavailable")  # the real failure, not circuit_open
    assert len(fake.requests) == 2
    assert backend.breaker.state == "open"


async def test_closing_the_stream_early_disconnects_the_upstream(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    fake.words, fake.delay = [f"w{i}" for i in range(50)], 0.05
    backend = make_backend()
    stream = backend.stream(MESSAGES)
    assert await anext(stream) == "w0"
    await stream.aclose()
    await fake.wait_for_disconnect()
    assert fake.completed == 0
    assert backend.breaker.status()["consecutive_failures"] == 0


async def test_cancelling_the_consumer_disconnects_the_upstream(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    fake.words, fake.delay = [f"w{i}" for i in range(50)], 0.05
    backend = make_backend()
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.stream(MESSAGES):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_for_disconnect()
    assert fake.completed == 0


async def test_a_cancelled_probe_frees_the_probe_slot(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    clock = FakeClock()
    backend = make_backend(breaker=CircuitBreaker(1, 10.0, clock=clock))
    fake.mode = "fail"
    await expect_error(backend, "upstream_unavailable")
    clock.now += 10
    fake.mode, fake.words, fake.delay = "stream", ["a", "b", "c"], 0.05
    stream = backend.stream(MESSAGES)
    assert await anext(stream) == "a"
    await stream.aclose()
    assert backend.breaker.status()["state"] == "half_open"
    text, _ = await collect(backend)  # the next call may probe
    assert text == "a b c"
    assert backend.breaker.status()["state"] == "closed"


async def test_status_reports_without_calling_the_upstream(
    fake: FakeOpenAI, make_backend: MakeBackend
) -> None:
    status = await make_backend(url=fake.url + "/").status()
    assert status["backend"] == "openai"
    assert status["model"] == "fake-model"
    assert status["url"] == fake.url
    assert status["breaker"]["state"] == "closed"
    assert fake.requests == []


CONFIG = {
    "AI_SERVICE_URL": "http://127.0.0.1:9/v1",
    "AI_MODEL": "m",
    "AI_API_KEY": None,
    "AI_CONNECT_TIMEOUT_SECONDS": 1,
    "AI_READ_TIMEOUT_SECONDS": 2,
    "AI_RETRIES": 3,
    "AI_RETRY_BACKOFF_SECONDS": 0.1,
    "AI_BREAKER_FAILURES": 4,
    "AI_BREAKER_RESET_SECONDS": 5,
}


async def test_from_config() -> None:
    backend = OpenAIBackend.from_config(CONFIG)
    assert (backend.name, backend.model, backend.base_url) == (
        "openai",
        "m",
        CONFIG["AI_SERVICE_URL"],
    )
    assert backend.breaker.failure_threshold == 4
    assert backend.breaker.reset_seconds == 5.0
    await backend.aclose()


@pytest.mark.parametrize("url", [None, ""])
def test_from_config_needs_a_service_url(url: str | None) -> None:
    with pytest.raises(ValueError, match="AI_SERVICE_URL"):
        OpenAIBackend.from_config({**CONFIG, "AI_SERVICE_URL": url})
