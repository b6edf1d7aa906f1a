"""Responses are encoded by orjson (quart-schema must not swap the provider back)."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel
from quart import Quart
from quart.typing import TestClientProtocol as Client

from royal.json_provider import OrjsonProvider


class Point(BaseModel):
    x: int


def test_the_app_uses_orjson(app: Quart) -> None:
    assert type(app.json) is OrjsonProvider


async def test_keys_keep_their_order(client: Client) -> None:
    body = await (await client.get("/readyz")).get_data(as_text=True)
    assert body.startswith('{"status":"ready","checks":')  # the model's order, not sorted


def test_types_beyond_plain_json(app: Quart) -> None:
    value = {
        "when": dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC),
        "id": uuid.UUID(int=1),
        "model": Point(x=1),
        "tags": {"a"},
    }
    assert app.json.loads(app.json.dumps(value)) == {
        "when": "2026-11-22T12:00:00Z",
        "id": "00000000-0000-0000-0000-000000000001",
        "model": {"x": 1},
        "tags": ["a"],
    }
