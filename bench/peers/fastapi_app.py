"""The FastAPI peer: serve with Uvicorn,
``uvicorn --factory bench.peers.fastapi_app:create_app``.

Every route declares its return type, so FastAPI serialises through pydantic straight to JSON
bytes (its fast path); every dependency is ``async def``, so none goes to the thread pool.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

from bench.peers import fastapi_streams
from bench.peers.config import PeerConfig
from bench.peers.contract import Created, ItemIn
from bench.peers.fanout import Hub
from bench.peers.fastapi_db import Row, Rows, open_rows

router = APIRouter()
UPSTREAM_CONNECTIONS = 1000  # more than any load's concurrency: requests never queue for one


class Hello(BaseModel):
    ok: bool
    backend: str
    items: list[int]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    config: PeerConfig = app.state.config
    rows = app.state.rows = await open_rows(config)
    upstream = app.state.upstream = _upstream_client(config.upstream_url)
    try:
        yield
    finally:
        if upstream is not None:
            await upstream.aclose()
        await rows.close()


def _upstream_client(url: str | None) -> httpx.AsyncClient | None:
    """One client for the app's lifetime, as httpx advises. Its pool's CPU per call grows with
    the connections open (encode/httpx#3215), so W4 at high concurrency largely measures it."""
    if url is None:
        return None
    limits = httpx.Limits(
        max_connections=UPSTREAM_CONNECTIONS, max_keepalive_connections=UPSTREAM_CONNECTIONS
    )
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=10)


def create_app(config: PeerConfig | None = None) -> FastAPI:
    app = FastAPI(title="FastAPI peer", lifespan=lifespan)
    app.state.config = config or PeerConfig.from_env()
    app.state.hub = Hub()
    app.state.item_ids = itertools.count(1)
    app.include_router(router)
    app.include_router(fastapi_streams.router)
    return app


async def get_rows(request: Request) -> Rows:
    rows: Rows = request.app.state.rows
    return rows


async def get_upstream(request: Request) -> httpx.AsyncClient:
    upstream: httpx.AsyncClient | None = request.app.state.upstream
    if upstream is None:
        raise HTTPException(503, "PEER_UPSTREAM_URL is not set.")
    return upstream


@router.get("/json")
async def hello() -> Hello:
    """A small JSON object."""
    return Hello(ok=True, backend="fastapi", items=[1, 2, 3])


@router.get("/rows/{row_id}")
async def get_row(row_id: int, rows: Annotated[Rows, Depends(get_rows)]) -> Row:
    """One row of ``items``."""
    row = await rows.select_row(row_id)
    if row is None:
        raise HTTPException(404, "Row not found.")
    return row


@router.post("/validated", status_code=201)
async def create_item(item: ItemIn, request: Request) -> Created:
    """Echo a validated body with a new id (FastAPI answers 422 to an invalid one)."""
    return Created(id=next(request.app.state.item_ids), **item.model_dump())


@router.get("/upstream")
async def call_upstream(
    upstream: Annotated[httpx.AsyncClient, Depends(get_upstream)],
) -> dict[str, Any]:
    """The JSON of a call to the (50 ms) upstream service."""
    response = await upstream.get("/")
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data
