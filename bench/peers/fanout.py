"""In-process fan-out for the peers' SSE and WebSocket streams, on Royal's wire format.

An event is encoded once, for both transports, when it is published; subscribers hold it in a
bounded inbox of their own (a gevent queue in Flask, an asyncio queue in FastAPI). Publishing
never waits: an inbox that is full is dropped and closed, and its client reconnects.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

TOPIC = "alerts"
INBOX_SIZE = 1000  # events per subscriber, as Royal's STREAM_SUBSCRIBER_BUFFER
HEARTBEAT_SECONDS = 15.0  # an idle SSE stream gets a comment this often, as in Royal
RETRY_FRAME = b"retry: 3000\n\n"  # the first frame of every SSE stream, as Royal sends it
PING_FRAME = b": ping\n\n"


def dumps(value: Any) -> str:
    """Compact JSON, as Royal writes it (non-ASCII characters stay as they are)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    event: str
    sse: bytes  # ``id:``, ``event:``, one ``data:`` line (compact JSON has no line breaks)
    ws: str  # the WebSocket ``event`` message

    @classmethod
    def encode(cls, id: int, event: str, data: Any) -> Event:
        payload = dumps(data)
        return cls(
            id,
            event,
            f"id: {id}\nevent: {event}\ndata: {payload}\n\n".encode(),
            dumps({"type": "event", "topic": TOPIC, "event": event, "id": id, "data": data}),
        )


class Inbox(Protocol):
    def offer(self, item: Event, /) -> bool:
        """Queue without waiting; False when full."""

    def close(self) -> None:
        """End the subscriber's stream."""


InboxT = TypeVar("InboxT", bound=Inbox)


class Hub:
    """Every event published in this process, to every subscribed inbox, numbered from 1."""

    def __init__(self) -> None:
        self._inboxes: set[Inbox] = set()
        self._ids = itertools.count(1)

    def publish(self, event: str, data: Any) -> Event:
        encoded = Event.encode(next(self._ids), event, data)
        lagging = [inbox for inbox in self._inboxes if not inbox.offer(encoded)]
        for inbox in lagging:
            self._inboxes.discard(inbox)
            inbox.close()
        return encoded

    @contextmanager
    def subscribe(self, inbox: InboxT) -> Iterator[InboxT]:
        self._inboxes.add(inbox)
        try:
            yield inbox
        finally:
            self._inboxes.discard(inbox)


def reply_to(message: str) -> str | None:
    """The answer to a WebSocket client's message, if any.

    The peers send every event to every socket, but they acknowledge a ``subscribe`` the way
    Royal does, so one client works against all three.
    """
    try:
        request = json.loads(message)
    except ValueError:
        return None
    if isinstance(request, dict) and request.get("type") == "subscribe":
        return dumps({"type": "subscribed", "topics": request.get("topics") or [TOPIC]})
    return None
