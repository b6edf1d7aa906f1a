"""RoyalQuart's shorter request path behaves as Quart's: bodies in pieces, streamed bodies whose
client leaves, missing headers, sync hooks, and the responses quart-schema used to convert."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.dataclasses import dataclass as pydantic_dataclass
from quart import Quart, Response, request
from werkzeug.exceptions import BadRequestKeyError

from royal.app import RequestHeaders, RoyalQuart
from royal.auth import public
from tests.conftest import PASSWORD, LiveRoyal


class Model(BaseModel):
    name: str
    size: int = 1


@dataclasses.dataclass
class Plain:
    name: str


@pydantic_dataclass
class Checked:
    name: str


def test_royal_builds_a_royal_quart(app: Quart) -> None:
    assert isinstance(app, RoyalQuart)


def test_request_headers_answer_a_missing_name_without_raising() -> None:
    headers = RequestHeaders([("X-Request-Id", "abc"), ("Accept", "text/html")])
    assert headers.get("x-request-id") == "abc"
    assert headers.get("Missing") is None
    assert headers.get("Missing", "fallback") == "fallback"
    assert headers.get("Content-Length", type=int) is None
    assert "accept" in headers and "Missing" not in headers
    with pytest.raises(BadRequestKeyError):
        headers["Missing"]  # still a 400 when a handler insists


async def test_views_and_hooks_as_in_quart(app: Quart) -> None:
    seen: list[str] = []

    @app.before_request
    def sync_hook() -> None:  # run in a thread, as Quart runs sync functions
        seen.append(request.path)

    @app.get("/t/model")  # type: ignore[type-var]
    @public
    async def model() -> Model:
        return Model(name="m")

    @app.get("/t/plain")  # type: ignore[type-var]
    @public
    async def plain() -> tuple[Plain, int]:
        return Plain(name="p"), 202

    @app.get("/t/checked")  # type: ignore[type-var]
    @public
    async def checked() -> Checked:
        return Checked(name="c")

    @app.get("/t/nested")
    @public
    async def nested() -> dict[str, object]:
        return {"items": [Model(name="a", size=2)], "by": Plain(name="b")}

    @app.get("/t/header")
    @public
    async def header() -> str:
        return request.headers["X-Needed"]

    client = app.test_client()
    answers = {path: await client.get(path) for path in ("/t/model", "/t/plain", "/t/checked")}
    assert await answers["/t/model"].get_json() == {"name": "m", "size": 1}
    assert answers["/t/plain"].status_code == 202
    assert await answers["/t/plain"].get_json() == {"name": "p"}
    assert await answers["/t/checked"].get_json() == {"name": "c"}
    nested_body = await (await client.get("/t/nested")).get_json()
    assert nested_body == {"items": [{"name": "a", "size": 2}], "by": {"name": "b"}}
    missing = await client.get("/t/header")
    assert missing.status_code == 400
    assert missing.headers["Content-Type"] == "application/json"
    assert seen[-1] == "/t/header" and len(seen) == 5


async def _raw(live: LiveRoyal, pieces: list[bytes], pause: float) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", live.server.port)
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(pause)
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


async def test_a_body_in_pieces_reaches_the_handler(
    live_royal: Callable[..., Awaitable[LiveRoyal]],
) -> None:
    live = await live_royal()
    body = json.dumps({"username": "operator", "password": PASSWORD}).encode()
    head = (
        b"POST /auth/login HTTP/1.1\r\nHost: royal\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    half = len(body) // 2
    chunks = [body[:half], body[half:]]
    pieces = [head] + [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks] + [b"0\r\n\r\n"]
    answer = await _raw(live, pieces, pause=0.2)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b'"access_token"' in answer


async def test_a_cancelled_stream_leaves_no_task_behind(app: Quart) -> None:
    """A server cancels a request's task at shutdown: its sender and watcher go with it."""

    @app.get("/t/forever")
    @public
    async def forever() -> Response:
        async def ticks() -> AsyncIterator[bytes]:
            while True:
                yield b"tick\n"
                await asyncio.sleep(0.01)

        response = Response(ticks())
        response.timeout = None
        return response

    sent = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not sent.is_set():
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.set()

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/t/forever",
        "raw_path": b"/t/forever",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"royal")],
        "client": ("127.0.0.1", 1),
        "server": ("royal", 80),
    }
    before = asyncio.all_tasks()
    handler = asyncio.ensure_future(app(scope, receive, send))
    await asyncio.wait_for(sent.wait(), 5)
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    assert [task for task in asyncio.all_tasks() - before if not task.done()] == []
