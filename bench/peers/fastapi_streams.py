"""The FastAPI peer's realtime routes: sse-starlette for SSE, FastAPI's own WebSocket.

Each stream waits on its own bounded asyncio queue. The frames are bytes encoded once per
event (``fanout.Event``), which sse-starlette passes through unchanged; its keep-alive ping is
set to Royal's ``: ping`` comment every 15 s. (FastAPI 0.135+ has an SSE response of its own,
but it writes ``id:`` after ``data:`` and JSON with spaces, so its frames differ from Royal's.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Annotated, Generic, TypeVar

from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect
from fastapi.requests import HTTPConnection
from sse_starlette import EventSourceResponse, ServerSentEvent

from bench.peers.contract import Published, PublishIn
from bench.peers.fanout import (
    HEARTBEAT_SECONDS,
    INBOX_SIZE,
    RETRY_FRAME,
    TOPIC,
    Event,
    Hub,
    reply_to,
)

T = TypeVar("T")
router = APIRouter()


class Inbox(Generic[T]):
    """A subscriber's bounded asyncio queue."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[T | None] = asyncio.Queue(INBOX_SIZE)
        self.closed = False

    def offer(self, item: T, /) -> bool:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def close(self) -> None:
        self.closed = True
        with suppress(asyncio.QueueFull):  # a full queue has no reader waiting to be woken
            self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            item = await self._queue.get()
            if item is None or self.closed:
                return
            yield item


async def get_hub(connection: HTTPConnection) -> Hub:
    hub: Hub = connection.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(get_hub)]


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment="ping", sep="\n")


@router.get(f"/streams/{TOPIC}")
async def stream_alerts(hub: HubDep) -> EventSourceResponse:
    """Server-Sent Events: ``retry:``, then every event published from now on."""
    return EventSourceResponse(
        _frames(hub), sep="\n", ping=HEARTBEAT_SECONDS, ping_message_factory=_ping
    )


async def _frames(hub: Hub) -> AsyncIterator[bytes]:
    # sse-starlette cancels this generator when the client goes away, which leaves the `with`.
    with hub.subscribe(Inbox[Event]()) as inbox:
        yield RETRY_FRAME
        async for event in inbox:
            yield event.sse


@router.post(f"/streams/{TOPIC}", status_code=201)
async def publish_alert(body: PublishIn, hub: HubDep) -> Published:
    """Send one event to every open SSE stream and WebSocket of this process."""
    event = hub.publish(body.event, body.data)
    return Published(id=event.id, topic=TOPIC, event=event.event)


@router.websocket("/ws")
async def websocket_events(websocket: WebSocket, hub: HubDep) -> None:
    """Every event published from now on, as a JSON text message."""
    await websocket.accept()
    with hub.subscribe(Inbox[Event | str]()) as inbox:
        reader = asyncio.create_task(_answer_client(websocket, inbox))
        try:
            async for item in inbox:
                await websocket.send_text(item.ws if isinstance(item, Event) else item)
        except WebSocketDisconnect:
            pass
        finally:
            reader.cancel()


async def _answer_client(websocket: WebSocket, inbox: Inbox[Event | str]) -> None:
    """Read the client's messages (acknowledging a subscribe) until it goes away."""
    async for message in websocket.iter_text():
        reply = reply_to(message)
        if reply is not None:
            inbox.offer(reply)
    inbox.close()
