"""StreamBody's fallback: a server path other than Royal's iterates the stream it wraps."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from royal.stream_body import StreamBody


class TwoChunks:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def run(self, write: Callable[[bytes], Coroutine[Any, Any, None]]) -> None:
        await write(b"retry: 3000\n\n")
        await write(b"id: 1\ndata: {}\n\n")
        if self.fail:
            raise ConnectionResetError("stream broke")


async def test_iterating_yields_what_the_stream_writes() -> None:
    async with StreamBody(TwoChunks()) as body:
        chunks = [chunk async for chunk in body]
    assert chunks == [b"retry: 3000\n\n", b"id: 1\ndata: {}\n\n"]


async def test_the_streams_error_reaches_the_iterator() -> None:
    with pytest.raises(ConnectionResetError):
        async with StreamBody(TwoChunks(fail=True)) as body:
            [chunk async for chunk in body]
