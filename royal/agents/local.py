"""The embedded agent: deterministic, no network, answers from Royal's own data.

It knows three things (open alerts, the job queue, the system's state) and otherwise restates
the question. It streams its answer word by word with a pause, like a model would, so clients,
resume and the grace period behave as they will against a real upstream.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any

from royal.agents.backend import ChatMessage, Usage
from royal.services import alerts, jobs

if TYPE_CHECKING:
    from royal.db import Database

_WORD = re.compile(r"\S+\s*")
_TOPICS = {
    "alerts": re.compile(r"\b(alerts?|warnings?|emergenc\w*)\b", re.IGNORECASE),
    "jobs": re.compile(r"\b(jobs?|queues?|tasks?|workers?)\b", re.IGNORECASE),
    "status": re.compile(r"\b(status|health\w*|system|up|running)\b", re.IGNORECASE),
}


def words(text: str) -> list[str]:
    """Text as tokens: each word with the whitespace after it (they join back to the text)."""
    return _WORD.findall(text)


class LocalBackend:
    name = "local"
    model = "royal-local"

    def __init__(self, db: Database, token_seconds: float) -> None:
        self.db = db
        self.token_seconds = token_seconds

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str | Usage, None]:
        question = next((m.content for m in reversed(messages) if m.role == "user"), "")
        tokens = words(await self.answer(question))
        # On a fixed schedule, like a model server that keeps its pace: a busy event loop
        # delays tokens but does not slow the reply down.
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, token in enumerate(tokens):
            if n and (wait := start + n * self.token_seconds - loop.time()) > 0:
                await asyncio.sleep(wait)
            yield token  # behind schedule: the late tokens go out back to back
        prompt = sum(len(words(message.content)) for message in messages)
        yield Usage(prompt_tokens=prompt, completion_tokens=len(tokens))

    async def answer(self, question: str) -> str:
        asked = [name for name, pattern in _TOPICS.items() if pattern.search(question)]
        if not asked:
            said = " ".join(question.split())
            return (
                f"You asked: {said} I am Royal's built-in agent, so I can only tell you about "
                "open alerts, the job queue and the system's status."
            )
        parts = [await getattr(self, f"_{name}")() for name in asked]
        return " ".join(parts)

    async def _alerts(self) -> str:
        found = await alerts.select_alerts(self.db, state="active", limit=5)
        if not found:
            return "There are no open alerts."
        shown = found[:5]
        listed = "; ".join(f"{a.event_code} ({a.severity}): {a.message}" for a in shown)
        more = " and more" if len(found) > 5 else ""
        return f"Open alerts{more}: {listed}."

    async def _jobs(self) -> str:
        depth = await jobs.queue_depth(self.db)
        return f"The job queue has {depth['queued']} queued and {depth['running']} running jobs."

    async def _status(self) -> str:
        await self.db.fetch_val("SELECT 1")
        open_alerts = await alerts.count_active(self.db)
        depth = await jobs.queue_depth(self.db)
        return (
            f"Royal is up on {self.db.dialect}, with {open_alerts} open alerts "
            f"and {depth['queued'] + depth['running']} unfinished jobs."
        )

    async def status(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}

    async def aclose(self) -> None:
        return None
