"""The ``agent.reply`` job: generate one assistant message and stream it as durable events.

Events on ``agent:<session_id>``, in order: ``message`` ``{"message_id", "delta", "index"}``
(tokens gathered for at most ~50 ms each), then exactly one of ``done`` ``{"message_id",
"content", "usage", "finish_reason"}`` or ``error`` ``{"message_id", "code", "error",
"content"}``. The final event and the message row's text are written in one transaction.

The reply runs wherever its job was claimed; its streams may be on any worker. It keeps
generating while anybody watches (``Presence``) and for the grace period after the last
watcher left, so a reconnect finds it whole; then it stops the upstream call and stores the
partial text as ``cancelled``. A worker lost mid-reply cannot continue it (a model's second
answer would differ), so the next attempt ends it as ``failed`` with the text already sent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from royal.agents.backend import Backend, BackendError, ChatMessage, Usage, estimate_tokens
from royal.agents.deltas import DeltaWriter, ReplyDeltas
from royal.jobs.registry import JobContext
from royal.services import agents, replies, settings


@dataclass(frozen=True)
class Agents:
    """What replies need, shared by every reply of the process."""

    backend: Backend
    writer: DeltaWriter
    context_messages: int
    presence_seconds: float = 2.0  # how often watchers are recorded (AGENT_PRESENCE_SECONDS)

    async def reply_job(self, context: JobContext, payload: Any) -> dict[str, Any]:
        return await Reply(self, context, int(payload["message_id"])).run()


class Abandoned(Exception):
    """Nobody watched the session for the whole grace period."""


class Reply:
    def __init__(self, agents_: Agents, context: JobContext, message_id: int) -> None:
        self.agents = agents_
        self.context = context
        self.db = context.db
        self.message_id = message_id

    async def run(self) -> dict[str, Any]:
        reply = await replies.start_reply(self.db, self.message_id)
        if reply is None:
            return {"outcome": "already ended"}
        sent = await replies.emitted_deltas(self.db, reply)
        if sent:  # an earlier attempt died after streaming part of it
            partial = "".join(sent)
            data = replies.error_event(reply, "interrupted", "The reply was interrupted.", partial)
            await self._finish(reply, "failed", partial, "error", data, error="interrupted")
            return {"outcome": "interrupted"}
        deltas = self.agents.writer.open(agents.topic(reply.session_id), reply.id)
        history = await agents.conversation(self.db, reply, self.agents.context_messages)
        messages = [ChatMessage(m.role, m.content) for m in history]
        # Watchers are recorded every presence interval: a shorter grace would cancel replies
        # that are being watched.
        grace = max(
            float(await settings.get_setting(self.db, "agent_grace_seconds")),
            2 * self.agents.presence_seconds,
        )
        try:
            usage = await self._generate(reply, messages, deltas, grace)
        except asyncio.CancelledError:
            if not self.context.cancel_requested():
                raise  # lease lost or shutting down: not ours to end
            await self._end(reply, deltas, "cancelled", "The reply was cancelled.")
            raise
        except Abandoned:
            return await self._end(reply, deltas, "abandoned", "Nobody was watching the reply.")
        except BackendError as error:
            return await self._end(reply, deltas, error.code, error.message)
        await deltas.flush()
        done = {
            "message_id": reply.id,
            "content": deltas.text,
            "usage": usage.to_json(),
            "finish_reason": "stop",
        }
        await self._finish(reply, "complete", deltas.text, "done", done, usage=usage.to_json())
        return {"outcome": "complete", "tokens": deltas.tokens}

    async def _generate(
        self, reply: agents.Message, messages: list[ChatMessage], deltas: ReplyDeltas, grace: float
    ) -> Usage:
        """Feed the backend's tokens to ``deltas``; stop if nobody watches for ``grace``."""
        generation = asyncio.create_task(self._consume(messages, deltas))
        watch = asyncio.create_task(self._watch(reply.session_id, grace, generation))
        try:
            return await generation
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if watch.done() and not watch.cancelled() and current and not current.cancelling():
                raise Abandoned() from None
            raise
        finally:
            watch.cancel()
            generation.cancel()  # when this task is cancelled, the upstream call stops too
            await asyncio.gather(watch, generation, return_exceptions=True)

    async def _consume(self, messages: list[ChatMessage], deltas: ReplyDeltas) -> Usage:
        usage: Usage | None = None
        async for item in self.agents.backend.stream(messages):
            if isinstance(item, Usage):
                usage = item
            else:
                deltas.add(item)
        prompt = sum(estimate_tokens(m.content) for m in messages)
        return usage or Usage(prompt, deltas.tokens)

    async def _watch(self, session_id: str, grace: float, generation: asyncio.Task[Any]) -> None:
        """Cancel ``generation`` once the session went unwatched for ``grace`` seconds."""
        interval = min(max(grace / 3, 0.2), 5.0)
        while True:
            await asyncio.sleep(interval)
            try:
                seen = await agents.watched_at(self.db, session_id)
            except Exception:
                continue  # the database is away: keep generating rather than guess
            if seen is None or time.time() - seen > grace:
                generation.cancel()
                return

    async def _end(
        self, reply: agents.Message, deltas: ReplyDeltas, code: str, message: str
    ) -> dict[str, Any]:
        """Store what was generated, and tell the stream why it stopped."""
        await deltas.flush()
        status: agents.Status = "cancelled" if code in ("cancelled", "abandoned") else "failed"
        data = replies.error_event(reply, code, message, deltas.text)
        await self._finish(reply, status, deltas.text, "error", data, error=code)
        return {"outcome": code, "tokens": deltas.tokens}

    async def _finish(
        self,
        reply: agents.Message,
        status: agents.Status,
        content: str,
        event: str,
        data: dict[str, Any],
        *,
        usage: dict[str, int] | None = None,
        error: str | None = None,
    ) -> None:
        await replies.finish_reply(
            self.db, reply, status, content, event, data, usage=usage, error=error
        )
        self.context.broker.wake()
