"""The OpenAI-compatible upstream backend: streamed chat completions over HTTP.

Works against anything that speaks ``POST /chat/completions`` with ``"stream": true`` (OpenAI,
vLLM, Ollama, llama.cpp). Failures become :class:`BackendError` codes:

- cannot connect, 5xx, 429, dropped connection -> ``upstream_unavailable``
- no chunk within the read timeout -> ``upstream_timeout``
- any other 4xx, an ``error`` chunk, a body that is not SSE of JSON -> ``upstream_error``

Only an attempt that has produced no text yet is retried: after the first delta the caller
already holds text, and a second attempt would repeat it. A 4xx is our request's fault, so it
neither retries nor counts against the circuit breaker; everything else the upstream does wrong
counts. A stream counts as a success once it completes, so an upstream that keeps dying mid-reply
still opens the circuit.

The HTTP client is aiohttp: httpx's connection pool scans every connection for every request,
and with 256 replies streaming at once (AGENT_CONCURRENCY's default) this backend spent 5.8 ms
of CPU per reply on httpx, 61 % of a core, against 1.65 ms and 17 % on aiohttp
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import aiohttp

from royal.agents.backend import BackendError, ChatMessage, ErrorCode, Usage, estimate_tokens
from royal.agents.breaker import CircuitBreaker
from royal.streams.sse import SSEParser

_ERROR_BODY_LIMIT = 300  # characters of an upstream's error body quoted in our message


class _AttemptFailed(Exception):
    """One attempt went wrong: what to report, whether another attempt may help, whose fault."""

    def __init__(
        self, error: BackendError, *, retryable: bool, upstream_fault: bool = True
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.retryable = retryable
        self.upstream_fault = upstream_fault


class OpenAIBackend:
    """Streams replies from an OpenAI-compatible ``/chat/completions`` endpoint."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None,
        connect_timeout: float,
        read_timeout: float,
        retries: int,
        retry_backoff: float,
        breaker: CircuitBreaker,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the AI service URL must start with http:// or https://: {base_url}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.breaker = breaker
        self._retries = max(0, retries)
        self._retry_backoff = retry_backoff
        # No total: a reply streams as long as it takes; only silence (sock_read) ends it.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self._headers = {"Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._client: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OpenAIBackend:
        """Build from Royal's config (``AI_*`` keys); raises ValueError without a service URL."""
        url = config.get("AI_SERVICE_URL")
        if not url:
            raise ValueError(
                "AGENT_BACKEND 'openai' needs AI_SERVICE_URL (ROYAL_AI_SERVICE_URL), "
                "an OpenAI-compatible base URL such as http://127.0.0.1:8001/v1"
            )
        return cls(
            str(url),
            str(config["AI_MODEL"]),
            api_key=config.get("AI_API_KEY") or None,
            connect_timeout=float(config["AI_CONNECT_TIMEOUT_SECONDS"]),
            read_timeout=float(config["AI_READ_TIMEOUT_SECONDS"]),
            retries=int(config["AI_RETRIES"]),
            retry_backoff=float(config["AI_RETRY_BACKOFF_SECONDS"]),
            breaker=CircuitBreaker(
                int(config["AI_BREAKER_FAILURES"]), float(config["AI_BREAKER_RESET_SECONDS"])
            ),
        )

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str | Usage, None]:
        """Yield the reply's text deltas, then one :class:`Usage` (the upstream's, or estimated).

        ``aclose()`` or cancellation closes the HTTP response, so the upstream sees the
        disconnect and can stop generating.
        """
        body = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        url = f"{self.base_url}/chat/completions"
        generated: list[str] = []
        usage: Usage | None = None
        failure: _AttemptFailed | None = None
        attempt = 0
        while True:
            try:
                self.breaker.before_call()
            except BackendError as refused:
                if failure is None:
                    raise
                raise failure.error from refused  # our own failures opened it: report them
            try:
                async with self._http().post(url, json=body, headers=self._headers) as response:
                    await _check_response(response)
                    parser, done, finished = SSEParser(), False, False
                    async for raw in response.content.iter_any():
                        for event in parser.feed(raw):
                            if event.data == "[DONE]":
                                done = True
                                break
                            delta, chunk_usage, chunk_finished = _read_chunk(event.data)
                            usage = chunk_usage or usage
                            finished = finished or chunk_finished
                            if delta:
                                generated.append(delta)
                                yield delta
                        if done:
                            break
                    if not (done or finished):  # a truncated reply must not pass as complete
                        raise _AttemptFailed(
                            BackendError("upstream_unavailable", "the upstream stream ended early"),
                            retryable=True,
                        )
            except aiohttp.ClientError as error:
                failure = _from_client_error(error)
            except _AttemptFailed as error:
                failure = error
            except BaseException:  # closed early or cancelled: the upstream did nothing wrong
                self.breaker.release()
                raise
            else:
                self.breaker.record_success()
                break

            if failure.upstream_fault:
                self.breaker.record_failure()
            else:
                self.breaker.release()
            if generated or not failure.retryable or attempt >= self._retries:
                raise failure.error from failure.__cause__
            await asyncio.sleep(self._retry_backoff * 2**attempt)
            attempt += 1

        if usage is None:
            prompt = "\n".join(m.content for m in messages)
            usage = Usage(estimate_tokens(prompt), estimate_tokens("".join(generated)))
        yield usage

    async def status(self) -> dict[str, Any]:
        """The backend and its breaker; raises ``circuit_open`` while calls would be refused.

        No network call: the breaker already knows how the last calls went.
        """
        breaker = self.breaker.status()
        if breaker["state"] == "open":
            raise BackendError(
                "circuit_open",
                f"circuit open after {breaker['consecutive_failures']} failures; "
                f"next try in {breaker['retry_in_seconds']:.1f} s",
            )
        return {"backend": self.name, "model": self.model, "url": self.base_url, "breaker": breaker}

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use (in the loop that uses it), so an app that never calls the
        # upstream opens nothing. No connection limit: AGENT_CONCURRENCY already bounds the
        # replies in flight. trust_env=False because Royal reads its settings from config only,
        # never from proxy variables.
        if self._client is None:
            self._client = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=0),
                trust_env=False,
            )
        return self._client


async def _check_response(response: aiohttp.ClientResponse) -> None:
    if response.status >= 400:
        detail = _error_detail(await response.read(), response.reason or "")
        message = f"the upstream answered {response.status}: {detail}"
        if response.status == 429 or response.status >= 500:
            raise _AttemptFailed(BackendError("upstream_unavailable", message), retryable=True)
        raise _AttemptFailed(
            BackendError("upstream_error", message), retryable=False, upstream_fault=False
        )
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise _AttemptFailed(
            BackendError("upstream_error", f"expected text/event-stream, got {content_type!r}"),
            retryable=False,
        )


def _error_detail(body: bytes, reason: str) -> str:
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)[:_ERROR_BODY_LIMIT]
    except (ValueError, AttributeError):
        pass
    return body.decode(errors="replace")[:_ERROR_BODY_LIMIT] or reason


def _read_chunk(data: str) -> tuple[str, Usage | None, bool]:
    """One ``data:`` payload -> (text delta, usage if given, whether a choice finished)."""
    try:
        chunk = json.loads(data)
    except ValueError:
        chunk = None
    if not isinstance(chunk, dict):
        raise _AttemptFailed(
            BackendError("upstream_error", f"not a JSON chunk: {data[:_ERROR_BODY_LIMIT]!r}"),
            retryable=False,
        )
    if chunk.get("error"):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise _AttemptFailed(
            BackendError("upstream_error", f"the upstream reported an error: {message}"),
            retryable=False,
        )
    delta, finished = "", False
    choices = chunk.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        content = (choices[0].get("delta") or {}).get("content")
        delta = content if isinstance(content, str) else ""
        finished = bool(choices[0].get("finish_reason"))
    return delta, _read_usage(chunk.get("usage")), finished


def _read_usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None  # OpenAI sends "usage": null on every chunk but the last
    try:
        return Usage(int(usage["prompt_tokens"]), int(usage["completion_tokens"]))
    except (KeyError, TypeError, ValueError):
        return None


def _from_client_error(error: aiohttp.ClientError) -> _AttemptFailed:
    code: ErrorCode
    if isinstance(error, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        code, what = "upstream_unavailable", "cannot reach the upstream"
    elif isinstance(error, aiohttp.ServerTimeoutError):
        code, what = "upstream_timeout", "no chunk from the upstream in time"
    else:
        code, what = "upstream_unavailable", "the upstream connection failed"
    failure = _AttemptFailed(
        BackendError(code, f"{what} ({type(error).__name__}: {str(error) or 'no detail'})"),
        retryable=True,
    )
    failure.__cause__ = error
    return failure
