"""``StreamBody``: a response body that writes itself, for SSE.

Quart sends a streamed body by iterating it in the request's task, one chunk per wake-up.
Royal's HTTP connection (``royal.app``) instead hands a ``StreamBody`` the ASGI ``send``, so
the stream can write live events from the dispatcher (``royal.streams.live_writer``). Any
other server path still iterates it, through a queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Protocol

from hypercorn.typing import ASGISendCallable
from quart.wrappers.response import ResponseBody


class StreamBody(ResponseBody):
    """Wraps a stream with ``run(write)``; ``send_through(send)`` runs it on an ASGI send."""

    def __init__(self, stream: SelfWriting) -> None:
        self.stream = stream

    async def __aenter__(self) -> StreamBody:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Nothing held: ``run`` cleans up after itself."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _iterate(self.stream)

    async def send_through(self, send: ASGISendCallable) -> None:
        async def write(frames: bytes) -> None:
            await send({"type": "http.response.body", "body": frames, "more_body": True})

        await self.stream.run(write)


class SelfWriting(Protocol):
    async def run(self, write: Callable[[bytes], Coroutine[Any, Any, None]]) -> None: ...


async def _iterate(stream: SelfWriting) -> AsyncIterator[bytes]:
    frames: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)

    async def write(chunk: bytes) -> None:
        await frames.put(chunk)

    async def produce() -> None:
        try:
            await stream.run(write)
        finally:
            await frames.put(None)

    producer = asyncio.ensure_future(produce())
    try:
        while (chunk := await frames.get()) is not None:
            yield chunk
        await producer  # its error, if any
    finally:
        producer.cancel()
