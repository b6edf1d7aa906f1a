"""The event envelope every subscriber receives, serialised once for SSE and once for WebSocket.

The data is JSON text from the log (or from an ephemeral publish), embedded as is: a thousand
subscribers cost one encoding per transport, not a thousand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from royal.streams import sse
from royal.streams.log import StoredEvent

RESET = "reset"  # the event name telling a client that events it asked for are gone


@dataclass(slots=True, eq=False)
class Event:
    topic: str
    event: str
    data: str  # JSON text
    id: int | None = None  # the log row id; None on ephemeral topics
    _sse: bytes | None = field(default=None, repr=False)
    _ws: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_stored(cls, stored: StoredEvent) -> Event:
        return cls(stored.topic, stored.event, stored.data, stored.id)

    @property
    def sse(self) -> bytes:
        """The SSE frame (``id:``, ``event:``, ``data:``)."""
        if self._sse is None:
            self._sse = sse.encode(self.data, event=self.event, id=self.id)
        return self._sse

    @property
    def ws(self) -> bytes:
        """The WebSocket ``event`` envelope: the same fields as the SSE frame, as JSON."""
        if self._ws is None:
            head = orjson.dumps(
                {"type": "event", "topic": self.topic, "event": self.event, "id": self.id}
            )
            self._ws = head[:-1] + b',"data":' + self.data.encode() + b"}"
        return self._ws

    def as_dict(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "event": self.event,
            "id": self.id,
            "data": orjson.loads(self.data),
        }
