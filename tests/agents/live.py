"""Helpers for agent tests over real sockets: a session, a question, and the reply's stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from royal.streams.sse import ParsedEvent
from tests.conftest import LiveRoyal

StartRoyal = Callable[..., Awaitable[LiveRoyal]]

# The local agent restates a question it cannot answer: this one makes a reply of ~60 words.
LONG_QUESTION = " ".join(f"word{n}" for n in range(40))


class AgentClient:
    """One user's calls to the agent API of a live Royal."""

    def __init__(self, live: LiveRoyal, role: str = "viewer") -> None:
        self.live = live
        self.token = live.tokens[role]
        self.http = httpx.AsyncClient(
            base_url=live.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def session(self) -> str:
        response = await self.http.post("/agents/session")
        assert response.status_code == 201, response.text
        return str(response.json()["session_id"])

    async def ask(self, session_id: str, content: str = LONG_QUESTION) -> dict[str, Any]:
        response = await self.http.post(
            "/agents/message", json={"session_id": session_id, "role": "user", "content": content}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def stream_url(self, session_id: str, **params: Any) -> str:
        query = "&".join(
            f"{key}={value}" for key, value in {"session_id": session_id, **params}.items()
        )
        return f"{self.live.url}/agents/stream?{query}"

    async def messages(self, session_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/agents/sessions/{session_id}/messages")
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def message(self, session_id: str, message_id: int) -> dict[str, Any]:
        (found,) = [m for m in await self.messages(session_id) if m["message_id"] == message_id]
        return found

    async def wait_for_status(
        self, session_id: str, message_id: int, statuses: tuple[str, ...], timeout: float = 20
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.message(session_id, message_id)
            if message["status"] in statuses:
                return message
            if time.monotonic() > deadline:
                raise AssertionError(f"message {message_id} still {message['status']}")
            await asyncio.sleep(0.05)


def data(event: ParsedEvent) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(event.data)
    return parsed


def deltas(events: list[ParsedEvent]) -> list[dict[str, Any]]:
    return [data(event) for event in events if event.event == "message"]
