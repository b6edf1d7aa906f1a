"""WebSocket subscribers for the stream benchmarks: the ``/ws`` twin of ``sse_load.Subscriber``.

Each socket speaks raw RFC 6455 (``bench.rawws``), subscribes to one topic the way Royal's
protocol says (``{"type":"subscribe","topics":[...]}``, answered by ``subscribed``; the peers
answer it alike) and accounts every event in the same ``Tally`` as the SSE subscribers, with
the same checks: each sequence number once, in order, ids increasing.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from bench import rawws
from bench.sse_load import Subscriber, Tally

_EVENT = b'{"type":"event",'  # how Royal's and the peers' event envelopes begin
_CLOSE_NORMAL = (1000).to_bytes(2, "big")


class WSSubscriber(Subscriber):
    """One WebSocket, subscribed to ``topic`` before ``connect`` returns; read in a task."""

    __slots__ = ("topic", "messages")

    def __init__(self, tally: Tally, topic: str) -> None:
        super().__init__(tally, "fast")
        self.topic = topic
        self.messages = rawws.FrameParser()

    async def connect(self, host: str, port: int, path: str, token: str) -> None:
        """Upgrade, subscribe, and wait for ``subscribed``: from then on every event is ours."""
        self.reader, self.writer = await asyncio.open_connection(host, port)
        key = rawws.new_key()
        self.writer.write(rawws.upgrade_request(host, port, path, token, key))
        await rawws.read_upgrade(self.reader, key, f"GET {path}")
        request = orjson.dumps({"type": "subscribe", "topics": [self.topic]})
        self.writer.write(rawws.client_frame(rawws.TEXT, request))
        while not self.ready:
            data = await self.reader.read(65536)
            if not data:
                raise RuntimeError(f"GET {path}: the socket closed before it was subscribed")
            self.feed(data, time.time())
        self._task = asyncio.create_task(self._read())

    def feed(self, data: bytes, now: float) -> None:
        """Bytes from the socket: split messages, account events, answer pings and closes."""
        for opcode, payload in self.messages.feed(data):
            if opcode == rawws.TEXT and payload.startswith(_EVENT):
                try:
                    name, event_id, event_data = rawws.event_envelope(payload)
                except ValueError:
                    self.tally.other_events += 1
                    continue
                self._event(name.decode(), event_id, event_data, now)
            elif opcode == rawws.TEXT:
                self._control(payload)
            elif opcode == rawws.PING:
                self._send(rawws.PONG, payload)
            elif opcode == rawws.CLOSE:
                self._send(rawws.CLOSE, payload[:2])
            elif opcode != rawws.PONG:
                self.tally.other_events += 1

    def _control(self, payload: bytes) -> None:
        """A message that is not an event: the subscribe's answer, a heartbeat, an error."""
        kind = orjson.loads(payload).get("type")
        if kind == "subscribed":
            self.ready = True
        elif kind in ("heartbeat", "pong"):
            self.tally.comments += 1
        elif not self.ready:
            raise RuntimeError(f"subscribing to {self.topic!r}: {payload.decode()}")
        else:
            self.tally.other_events += 1

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(rawws.client_frame(opcode, payload))

    async def close(self) -> None:
        """Say goodbye with a close frame (servers log an abrupt end as an error), then go."""
        self._send(rawws.CLOSE, _CLOSE_NORMAL)
        await super().close()
