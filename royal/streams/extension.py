"""Wire the realtime layer into an app: one broker, dispatcher and (on PostgreSQL) listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from quart import Quart, current_app

from royal import readiness
from royal.background import supervise
from royal.streams.broker import Broker
from royal.streams.dispatcher import Dispatcher
from royal.streams.listener import PostgresListener
from royal.streams.log import NOTIFY_CHANNEL
from royal.streams.topics import Topics


def init_app(app: Quart) -> None:
    config = app.config
    db = app.extensions["royal.db"]
    topics = Topics(config["STREAM_TOPICS"], config["STREAM_EPHEMERAL_TOPICS"])
    broker = Broker(
        db,
        topics,
        buffer_size=config["STREAM_SUBSCRIBER_BUFFER"],
        replay_page=config["STREAM_REPLAY_PAGE"],
    )
    on_postgres = db.dialect == "postgres"
    dispatcher = Dispatcher(
        db,
        broker,
        poll_seconds=config[
            "STREAM_FALLBACK_POLL_SECONDS" if on_postgres else "STREAM_POLL_SECONDS"
        ],
    )
    listener = (
        PostgresListener(
            config["DATABASE_URL"],
            NOTIFY_CHANNEL,
            dispatcher.wake,
            fallback_poll_seconds=config["STREAM_FALLBACK_POLL_SECONDS"],
        )
        if on_postgres
        else None
    )
    app.extensions["royal.broker"] = broker
    app.extensions["royal.stream_listener"] = listener

    async def _check() -> dict[str, Any]:
        if listener is None:
            return {"mode": "poll", "poll_seconds": config["STREAM_POLL_SECONDS"]}
        if not listener.connected:
            raise RuntimeError(f"LISTEN connection down: {listener.last_error}")
        return {"mode": "listen", **listener.status()}

    readiness.add_check(app, "streams", _check)

    @app.while_serving
    async def _serve_streams() -> AsyncGenerator[None, None]:
        loops = {"royal-stream-dispatcher": dispatcher.run}
        if listener is not None:
            loops["royal-stream-listener"] = listener.run
        tasks = [asyncio.create_task(supervise(*loop), name=loop[0]) for loop in loops.items()]
        yield
        broker.close("shutdown")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def drain(app: Quart, timeout: float) -> None:
    """End every open stream (SSE gets a retry hint, WebSockets 1001) and wait for them to go,
    at most ``timeout`` seconds: the first step of a graceful shutdown."""
    broker: Broker = app.extensions["royal.broker"]
    broker.close("shutdown")
    deadline = asyncio.get_running_loop().time() + timeout
    while broker.counters.sse_open + broker.counters.ws_open > 0:
        if asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(0.02)


def get_broker() -> Broker:
    broker: Broker = current_app.extensions["royal.broker"]
    return broker
