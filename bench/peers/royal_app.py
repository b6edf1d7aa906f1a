"""Royal with the benchmark's workload routes: Royal's real app (``royal.create_app``: request
ids, metrics, security headers, the auth hook, quart-schema, the orjson provider, its one
long-lived SQLite connection) plus a blueprint of the routes the peers serve.

Serve it the way ``royal serve`` does, with the repository's hypercorn.toml::

    hypercorn --config hypercorn.toml 'bench.peers.royal_app:create_app()'

or, to compare servers, the same ASGI app on Uvicorn::

    uvicorn --factory bench.peers.royal_app:create_app

Rows come from Royal's own database (``ROYAL_DATABASE_URL``), seeded with ``seed_rows``. The
routes are public, like the peers'; the stream workloads use Royal's real ``/streams/<topic>``
and ``/ws`` with a bearer token. ``/upstream`` calls through aiohttp, the client Royal's own
agent backend uses (FastAPI's peer keeps httpx, the client FastAPI's documentation uses; W4's
difference is mostly the clients', docs/performance.md).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
from quart import Blueprint, Quart, current_app
from quart_schema import validate_request, validate_response

import royal
from bench.peers.config import upstream_url_from_env
from bench.peers.contract import Created, ItemIn
from royal.auth import public
from royal.db import get_db
from royal.errors import APIError

bp = Blueprint("bench", __name__)
UPSTREAM_CONNECTIONS = 1000  # as the FastAPI peer: requests never queue for a connection


def create_app() -> Quart:
    app = royal.create_app()
    app.register_blueprint(bp)
    app.extensions["bench.item_ids"] = itertools.count(1)
    upstream_url = upstream_url_from_env()

    @app.while_serving
    async def _upstream() -> AsyncGenerator[None, None]:
        client = None
        if upstream_url is not None:
            client = aiohttp.ClientSession(
                base_url=upstream_url,
                connector=aiohttp.TCPConnector(limit=UPSTREAM_CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=10),
            )
        app.extensions["bench.upstream"] = client
        yield
        if client is not None:
            await client.close()

    return app


@bp.get("/json")
@public
async def hello() -> dict[str, Any]:
    """A small JSON object."""
    return {"ok": True, "backend": "royal", "items": [1, 2, 3]}


@bp.get("/rows/<int:row_id>")
@public
async def get_row(row_id: int) -> dict[str, Any]:
    """One row of ``items``, through Royal's Database (bound parameters, as everywhere)."""
    row = await get_db().fetch_one(
        "SELECT id, name, value FROM items WHERE id = :id", {"id": row_id}
    )
    if row is None:
        raise APIError(404, "ROW_NOT_FOUND", "Row not found.")
    return dict(row._mapping)


@bp.post("/validated")
@public
@validate_request(ItemIn)
@validate_response(Created, 201)
async def create_item(data: ItemIn) -> tuple[Created, int]:
    """Echo a validated body with a new id (Royal answers 400 to an invalid one)."""
    return Created(id=next(current_app.extensions["bench.item_ids"]), **data.model_dump()), 201


@bp.get("/upstream")
@public
async def call_upstream() -> dict[str, Any]:
    """The JSON of a call to the (50 ms) upstream service."""
    client: aiohttp.ClientSession | None = current_app.extensions["bench.upstream"]
    if client is None:
        raise APIError(503, "NO_UPSTREAM", "PEER_UPSTREAM_URL is not set.")
    async with client.get("/") as response:
        response.raise_for_status()
        data: dict[str, Any] = await response.json()
    return data
