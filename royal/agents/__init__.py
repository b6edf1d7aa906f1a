"""Agents: sessions answered by a pluggable backend, replies streamed as durable events.

``init_app`` picks the backend (AGENT_BACKEND: ``local`` or ``openai``), registers the
``agent.reply`` job in its own lane, guards ``agent:<session_id>`` topics (only the session's
owner reads them; only Royal publishes), and runs the delta writer and presence loops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import AbstractContextManager
from typing import Any

from quart import Quart, current_app

from royal import readiness
from royal.agents.backend import Backend, BackendError
from royal.agents.deltas import DeltaWriter
from royal.agents.local import LocalBackend
from royal.agents.presence import Presence
from royal.agents.reply import Agents
from royal.config import ConfigError
from royal.services import agents
from royal.services.tokens import Identity
from royal.streams.topics import Access

__all__ = ["get_agents", "get_presence", "init_app"]

LANE = "agents"


def build_backend(config: dict[str, Any], db: Any) -> Backend:
    kind = config["AGENT_BACKEND"]
    if kind == "local":
        return LocalBackend(db, float(config["AGENT_LOCAL_TOKEN_SECONDS"]))
    if kind == "openai":
        from royal.agents.openai_backend import OpenAIBackend

        try:
            return OpenAIBackend.from_config(config)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    raise ConfigError(f"Unknown AGENT_BACKEND {kind!r}: use 'local' or 'openai'.")


def init_app(app: Quart) -> None:
    config = app.config
    db = app.extensions["royal.db"]
    broker = app.extensions["royal.broker"]
    backend = build_backend(config, db)
    writer = DeltaWriter(db, broker, float(config["AGENT_BATCH_SECONDS"]))
    presence = Presence(db, float(config["AGENT_PRESENCE_SECONDS"]))
    service = Agents(
        backend, writer, int(config["AGENT_CONTEXT_MESSAGES"]), presence_seconds=presence.interval
    )
    app.extensions["royal.agents"] = service
    app.extensions["royal.agent_presence"] = presence

    handlers = app.extensions["royal.jobs"]
    handlers.add_lane(LANE, int(config["AGENT_CONCURRENCY"]))
    handlers.register(agents.REPLY_KIND, service.reply_job, lane=LANE)

    async def may_access(identity: Identity, topic: str, access: Access) -> bool:
        if access != "read":
            return False
        return await agents.session_owner(db, topic.partition(":")[2]) == identity.user_id

    def watching(topic: str) -> AbstractContextManager[object]:
        return presence.watching(topic.partition(":")[2])

    broker.topics.register_prefix(agents.TOPIC_PREFIX, may_access, watching)

    async def check_backend() -> dict[str, Any]:
        # An open circuit is shown, not failed: Royal still serves everything else, and an
        # instance taken out of rotation would never send the probe that closes the circuit.
        try:
            return await backend.status()
        except BackendError as error:
            details = {"degraded": error.code, "error": error.message}
            breaker = getattr(backend, "breaker", None)
            return details if breaker is None else details | {"breaker": breaker.status()}

    readiness.add_check(app, "agent", check_backend)

    @app.while_serving
    async def _serve_agents() -> AsyncGenerator[None, None]:
        tasks = [
            asyncio.create_task(writer.run(), name="royal-agent-deltas"),
            asyncio.create_task(presence.run(), name="royal-agent-presence"),
        ]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await backend.aclose()


def get_agents() -> Agents:
    service: Agents = current_app.extensions["royal.agents"]
    return service


def get_presence() -> Presence:
    presence: Presence = current_app.extensions["royal.agent_presence"]
    return presence
