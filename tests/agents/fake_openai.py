"""A fake OpenAI-compatible server for tests: real sockets on 127.0.0.1, scripted behaviour.

::

    async with FakeOpenAI(words=["Hello", "world"]) as fake:
        fake.mode = "hang_after_first"
        backend = OpenAIBackend(fake.url, "fake-model", ...)   # fake.url ends in /v1
        ...
        assert len(fake.requests) == 1
        await fake.wait_for_disconnect()                       # the client hung up early

It serves ``POST /v1/chat/completions`` (streamed when ``"stream": true``, else one
``chat.completion`` JSON) and ``GET /v1/models``. Set ``mode`` any time between requests:

- ``"stream"``: the words as ``chat.completion.chunk`` deltas, ``delay`` seconds apart, a
  finish chunk, a usage chunk (when the request asked for ``include_usage`` and
  ``send_usage`` is true), then ``data: [DONE]``.
- ``"slow_first"``: waits ``first_delay`` seconds after the headers, then streams.
- ``"hang_after_first"``: sends the first word, then waits until the client hangs up.
- ``"fail"``: HTTP ``fail_status`` (500) with an OpenAI-style JSON error body.
- ``"bad_request"``: HTTP 400 with a JSON error body.
- ``"fail_then_stream"``: fails the first ``fail_count`` requests as ``"fail"`` does, then
  streams.
- ``"error_chunk"``: the first word, then a ``data:`` chunk carrying an ``error`` object.
- ``"garbage"``: a 200 event stream whose ``data:`` is not JSON.
- ``"truncate"``: the first word, then the connection closes mid-body.

Every request is kept in ``requests`` (method, path, lower-cased headers, JSON body).
``disconnects`` counts responses the client abandoned before their end; ``completed`` counts
those sent whole. The HTTP is minimal on purpose: one request per connection
(``Connection: close``), a ``Content-Length`` body in, chunked bodies out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

Mode = Literal[
    "stream",
    "slow_first",
    "hang_after_first",
    "fail",
    "bad_request",
    "fail_then_stream",
    "error_chunk",
    "garbage",
    "truncate",
]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # the parsed JSON body; the raw text if it was not JSON; None if empty


class _ClientGone(Exception):
    """The client closed its connection while we were still answering."""


class _Connection:
    """One accepted connection: writes and pauses that notice when the client hangs up."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._eof = asyncio.ensure_future(self._watch(reader))

    @staticmethod
    async def _watch(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(1024):  # the client sends nothing more: b"" means gone
                pass

    async def write(self, data: bytes) -> None:
        if self._eof.done():
            raise _ClientGone
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError as error:
            raise _ClientGone from error

    async def pause(self, seconds: float | None) -> None:
        """Sleep (``None``: forever), but raise _ClientGone as soon as the client hangs up."""
        await asyncio.wait({self._eof}, timeout=seconds)
        if self._eof.done():
            raise _ClientGone

    async def close(self) -> None:
        self._eof.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._eof
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


class FakeOpenAI:
    """An in-process OpenAI-compatible server; use as ``async with FakeOpenAI() as fake``."""

    def __init__(
        self,
        *,
        mode: Mode = "stream",
        words: Sequence[str] = ("Hello", "from", "the", "fake", "model."),
        delay: float = 0.0,
        first_delay: float = 1.0,
        fail_count: int = 1,
        fail_status: int = 500,
        send_usage: bool = True,
        prompt_tokens: int = 11,
    ) -> None:
        self.mode: Mode = mode
        self.words = list(words)
        self.delay = delay
        self.first_delay = first_delay
        self.fail_count = fail_count
        self.fail_status = fail_status
        self.send_usage = send_usage
        self.prompt_tokens = prompt_tokens
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        self.completed = 0
        self._failed = 0  # requests failed so far in "fail_then_stream"
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL to give a client, ending in ``/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def reply(self) -> str:
        """The text a streamed or plain answer carries."""
        return " ".join(self.words)

    @property
    def usage(self) -> dict[str, int]:
        completion = len(self.words)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    async def __aenter__(self) -> FakeOpenAI:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_for_disconnect(self, count: int = 1, timeout: float = 2.0) -> None:
        """Wait until ``disconnects`` reaches ``count`` (the client may hang up a bit later)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.disconnects >= count)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        connection: _Connection | None = None
        try:
            request = await _read_request(reader)
            if request is None:
                writer.close()
                return
            self.requests.append(request)
            connection = _Connection(reader, writer)
            try:
                await self._answer(request, connection)
            except _ClientGone:
                self.disconnects += 1
            else:
                self.completed += 1
            async with self._changed:
                self._changed.notify_all()
        finally:
            if connection is not None:
                await connection.close()
            self._handlers.discard(task)

    async def _answer(self, request: RecordedRequest, connection: _Connection) -> None:
        if request.method == "GET" and request.path == "/v1/models":
            models = {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
            return await _send_json(connection, 200, models)
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return await _send_error(connection, 404, f"no route {request.method} {request.path}")
        body = request.body if isinstance(request.body, dict) else {}
        if self.mode == "bad_request":
            return await _send_error(connection, 400, "the request is invalid")
        if self.mode == "fail" or (
            self.mode == "fail_then_stream" and self._failed < self.fail_count
        ):
            self._failed += 1
            return await _send_error(connection, self.fail_status, "the fake is failing")
        model = str(body.get("model", "fake-model"))
        if not body.get("stream"):
            return await _send_json(connection, 200, self._completion(model))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        await self._stream(connection, model, include_usage)

    async def _stream(self, connection: _Connection, model: str, include_usage: bool) -> None:
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        await connection.write(head.encode())
        if self.mode == "slow_first":
            await connection.pause(self.first_delay)
        if self.mode == "garbage":
            await _send_chunk(connection, b"data: this is not json\n\n")
            return await connection.write(b"0\r\n\r\n")
        chunk_id, created = f"chatcmpl-fake-{len(self.requests)}", int(time.time())

        def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {"id": chunk_id, "object": "chat.completion.chunk", "created": created}
            chunk.update(model=model, choices=choices, **extra)
            return f"data: {json.dumps(chunk)}\n\n".encode()

        for index, word in enumerate(self.words):
            if index:
                await connection.pause(self.delay)
            delta = {"content": word if index == 0 else " " + word}
            if index == 0:
                delta = {"role": "assistant", **delta}
            extra = {"usage": None} if include_usage else {}
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            await _send_chunk(connection, frame([choice], **extra))
            if self.mode == "truncate":
                return
            if self.mode == "hang_after_first":
                await connection.pause(None)
            if self.mode == "error_chunk":
                error = {"error": {"message": "the model overloaded", "type": "server_error"}}
                await _send_chunk(connection, f"data: {json.dumps(error)}\n\n".encode())
                break
        else:
            stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
            await _send_chunk(connection, frame([stop]))
            if include_usage and self.send_usage:
                await _send_chunk(connection, frame([], usage=self.usage))
        await _send_chunk(connection, b"data: [DONE]\n\n")
        await connection.write(b"0\r\n\r\n")

    def _completion(self, model: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": self.reply}
        return {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": self.usage,
        }


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None  # a connection opened and closed without a request
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    raw = await reader.readexactly(int(headers.get("content-length", "0")))
    body: Any = None
    if raw:
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
    return RecordedRequest(method, target.split("?", 1)[0], headers, body)


async def _send_chunk(connection: _Connection, data: bytes) -> None:
    await connection.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


async def _send_json(connection: _Connection, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    await connection.write(head.encode() + body)


async def _send_error(connection: _Connection, status: int, message: str) -> None:
    kind = "invalid_request_error" if 400 <= status < 500 and status != 429 else "server_error"
    await _send_json(connection, status, {"error": {"message": message, "type": kind}})
