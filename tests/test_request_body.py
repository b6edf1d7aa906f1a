"""LightBody behaves as Quart's Body: awaited whole, iterated in pieces as they arrive, and
413 for a body declared or grown too large."""

from __future__ import annotations

import asyncio

import pytest
from werkzeug.exceptions import RequestEntityTooLarge

from royal.app import RoyalRequest
from royal.request_body import LightBody


def test_royal_requests_keep_their_body_in_a_light_body() -> None:
    assert RoyalRequest.body_class is LightBody


async def test_awaiting_waits_for_the_whole_body() -> None:
    body = LightBody(None, 100)
    whole = asyncio.ensure_future(_awaited(body))
    body.append(b"ab")
    await asyncio.sleep(0)
    assert not whole.done()
    body.append(b"cd")
    body.set_complete()
    assert await asyncio.wait_for(whole, 1) == b"abcd"


async def test_iterating_gives_the_pieces_as_they_arrive() -> None:
    body = LightBody(None, None)
    pieces: list[bytes] = []

    async def read() -> None:
        async for piece in body:
            pieces.append(piece)

    reader = asyncio.ensure_future(read())
    body.append(b"one")
    await asyncio.sleep(0.01)
    body.append(b"two")
    await asyncio.sleep(0.01)
    body.set_complete()
    await asyncio.wait_for(reader, 1)
    assert pieces == [b"one", b"two"]


async def test_a_body_declared_too_large_is_refused_before_it_is_read() -> None:
    body = LightBody(expected_content_length=101, max_content_length=100)
    with pytest.raises(RequestEntityTooLarge):
        await body


async def test_a_body_that_grows_too_large_is_refused() -> None:
    body = LightBody(None, 4)
    body.append(b"12345")
    with pytest.raises(RequestEntityTooLarge):
        await asyncio.wait_for(_awaited(body), 1)


async def _awaited(body: LightBody) -> bytes:
    return await body
