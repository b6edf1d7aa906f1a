"""The WebSocket protocol of ``/ws``: JSON messages in, event envelopes out.

Client messages: ``{"type": "subscribe", "topics": [...], "last_event_id": 42}``,
``{"type": "unsubscribe", "topics": [...]}`` and ``{"type": "ping"}``. The server sends
``subscribed``, ``unsubscribed``, ``pong``, ``heartbeat`` (every 15 s), ``event`` envelopes
(the same fields as an SSE frame, the same bytes for every subscriber) and ``error`` with a
code. A bad message gets an
``error``, not a dropped connection; a flood closes with 1008 and an oversized message with 1009.

Each subscribe is one subscription in id order; resume it with the last id received on it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from typing import Annotated, Any, Literal, Protocol

import orjson
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from royal.services.tokens import Identity
from royal.streams import eager
from royal.streams.broker import Broker, Subscription
from royal.streams.event import Event
from royal.streams.live_writer import LiveWriter
from royal.streams.topics import TopicError, TopicForbidden

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_DRAIN_SECONDS = 2.0


class Channel(Protocol):
    async def receive(self) -> str | bytes: ...
    async def send(self, data: str | bytes) -> None: ...
    async def close(self, code: int, reason: str = "") -> None: ...


class Subscribe(BaseModel):
    type: Literal["subscribe"]
    topics: list[str] = Field(min_length=1, max_length=32)
    last_event_id: int | None = Field(None, ge=0)


class Unsubscribe(BaseModel):
    type: Literal["unsubscribe"]
    topics: list[str] = Field(min_length=1, max_length=32)


class Ping(BaseModel):
    type: Literal["ping"]
    data: Any = None


_HEARTBEAT = b'{"type":"heartbeat"}'
ClientMessage = Annotated[Subscribe | Unsubscribe | Ping, Field(discriminator="type")]
_parse = TypeAdapter(ClientMessage).validate_python

Watch = Callable[[Callable[[], None]], AbstractContextManager[object]]


class Session:
    """One open WebSocket: its subscriptions, their pump tasks, and one writer at a time."""

    def __init__(
        self,
        channel: Channel,
        broker: Broker,
        identity: Identity,
        *,
        max_message_bytes: int,
        max_subscriptions: int,
        max_messages_per_second: float,
        heartbeat_seconds: float = 15.0,
    ) -> None:
        self.channel = channel
        # Royal's websocket sends without Quart's loop turn per send (royal/websocket.py).
        self._send_text = getattr(channel, "send_now", channel.send)
        self.broker = broker
        self.identity = identity
        self.max_message_bytes = max_message_bytes
        self.max_subscriptions = max_subscriptions
        self.rate = max_messages_per_second
        self.heartbeat_seconds = heartbeat_seconds
        self._allowance = max_messages_per_second
        self._last_check = time.monotonic()
        self._pumps: dict[frozenset[str], asyncio.Task[None]] = {}
        self._send_lock = asyncio.Lock()
        # Futures, not Events and tasks: every open socket holds these (memory per idle socket).
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._close: tuple[int, str] | None = None

    async def send(self, message: bytes | dict[str, Any]) -> None:
        data = message if isinstance(message, bytes) else orjson.dumps(message)
        async with self._send_lock:
            await self._send_text(data.decode())

    def _send_events(self, batch: list[Event]) -> Coroutine[Any, Any, None]:
        """One message per event, in order (counted when taken, as SSE does)."""
        self.broker.counters.delivered += len(batch)
        return self._send_all([event.ws for event in batch])

    async def _send_all(self, messages: list[bytes]) -> None:
        """A batch under one hold of the lock: nothing else lands between its events."""
        async with self._send_lock:
            for message in messages:
                await self._send_text(message.decode())

    async def error(self, code: str, message: str) -> None:
        await self.send({"type": "error", "code": code, "message": message})

    def end(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
        self._finish()

    async def serve(self, watch: Watch) -> None:
        """Run until the client leaves, the token dies or the server shuts down.

        While idle it waits on one future, with a timer for the heartbeat: no asyncio.wait
        per interval (its sets, callbacks and frames are held by every idle socket, W7)."""
        self.broker.counters.ws_open += 1
        receiver = asyncio.create_task(self._receive_loop())
        receiver.add_done_callback(lambda _: self._finish())
        beats = _Heartbeat(self)
        try:
            with (
                watch(lambda: self.end(CLOSE_POLICY, "token revoked")),
                self.broker.on_close(lambda: self.end(CLOSE_GOING_AWAY, "server shutting down")),
            ):
                await self._ended
        finally:
            self.broker.counters.ws_open -= 1
            beats.stop()
            tasks = (receiver, *self._pumps.values(), *beats.pending())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._close is not None:
            await self.channel.close(*self._close)
            await self._drain_after_close()
        elif not receiver.cancelled() and receiver.exception():
            raise receiver.exception()  # type: ignore[misc]

    def _finish(self) -> None:
        """``serve`` returns: ``end`` was called, or the receiver ended (the client left)."""
        if not self._ended.done():
            self._ended.set_result(None)

    async def _drain_after_close(self) -> None:
        """Read (and drop) what the client still sends until its close frame ends the socket.

        Returning at once would leave Hypercorn pushing a flood into a finished app's full
        queue (the socket never closes) or resetting the connection (the client sees 1006).
        """
        try:
            async with asyncio.timeout(CLOSE_DRAIN_SECONDS):
                while True:
                    await self.channel.receive()
        except Exception:  # the timeout, or the socket ending: either way we are done
            return

    async def _receive_loop(self) -> None:
        while True:
            raw = await self.channel.receive()
            size = len(raw) if isinstance(raw, bytes) else len(raw.encode())
            if size > self.max_message_bytes:
                self.end(CLOSE_TOO_BIG, "message too big")
                return
            if not self._take_token():
                self.end(CLOSE_POLICY, "too many messages")
                return
            await self._handle(raw)

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._allowance = min(self.rate, self._allowance + (now - self._last_check) * self.rate)
        self._last_check = now
        if self._allowance < 1:
            return False
        self._allowance -= 1
        return True

    async def _handle(self, raw: str | bytes) -> None:
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await self.error("bad_json", "Messages are JSON objects.")
            return
        if not isinstance(payload, dict) or payload.get("type") not in (
            "subscribe",
            "unsubscribe",
            "ping",
        ):
            await self.error("unknown_type", "type is one of subscribe, unsubscribe, ping.")
            return
        try:
            message = _parse(payload)
        except ValidationError as error:
            detail = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
            )
            await self.error("bad_message", detail)
            return
        if isinstance(message, Ping):
            await self.send({"type": "pong", "data": message.data})
        elif isinstance(message, Subscribe):
            await self._subscribe(message)
        else:
            await self._unsubscribe(message)

    async def _subscribe(self, message: Subscribe) -> None:
        try:
            topics = self.broker.topics.parse(message.topics)
            await self.broker.topics.authorize(self.identity, topics, "read")
        except TopicError as error:
            await self.error("unknown_topic", str(error))
            return
        except TopicForbidden as error:
            await self.error("forbidden", f"You may not read {error}.")
            return
        held = {topic for key in self._pumps for topic in key}
        if held & set(topics):
            await self.error(
                "already_subscribed", f"Already subscribed: {sorted(held & set(topics))}"
            )
            return
        if len(held) + len(topics) > self.max_subscriptions:
            await self.error("too_many_subscriptions", f"At most {self.max_subscriptions} topics.")
            return
        loop = asyncio.get_running_loop()
        registered: asyncio.Future[None] = loop.create_future()
        acknowledged: asyncio.Future[None] = loop.create_future()
        self._pumps[frozenset(topics)] = asyncio.create_task(
            self._pump(topics, message.last_event_id, registered, acknowledged)
        )
        await registered  # live events from now on are ours
        await self.send({"type": "subscribed", "topics": topics})
        acknowledged.set_result(None)  # the acknowledgement goes out before the first event

    async def _unsubscribe(self, message: Unsubscribe) -> None:
        removed: list[str] = []
        for key in [key for key in self._pumps if key & set(message.topics)]:
            self._pumps.pop(key).cancel()
            removed.extend(sorted(key))
        if not removed:
            await self.error("not_subscribed", f"Not subscribed to {message.topics}.")
            return
        await self.send({"type": "unsubscribed", "topics": removed})

    async def _pump(
        self,
        topics: list[str],
        last_event_id: int | None,
        registered: asyncio.Future[None],
        acknowledged: asyncio.Future[None],
    ) -> None:
        async with self.broker.subscribe(topics, last_event_id) as subscription:
            registered.set_result(None)
            with self.broker.topics.reading(topics):
                await acknowledged
                await self._forward(subscription)

    async def _forward(self, subscription: Subscription) -> None:
        """Live events from the dispatcher (``LiveWriter``), replay and catch-up from here."""
        live = LiveWriter(subscription, self._send_events)
        live.start()
        try:
            while (batch := await subscription.next_batch()) is not None:
                if batch:
                    await live.write(functools.partial(self._send_events, batch))
            await live.settle()
        finally:
            live.stop()
        if subscription.closed == "shutdown":
            self.end(CLOSE_GOING_AWAY, "server shutting down")


class _Heartbeat:
    """A heartbeat every interval (it keeps proxies from timing the socket out and finds dead
    peers by writing to them), sent from a timer when the socket has room, not from a task per
    socket sleeping between beats."""

    __slots__ = ("_session", "_loop", "_timer", "_sending")

    def __init__(self, session: Session) -> None:
        self._session = session
        self._loop = asyncio.get_running_loop()
        self._sending: asyncio.Future[None] | None = None
        self._timer = self._loop.call_later(session.heartbeat_seconds, self._beat)

    def _beat(self) -> None:
        self._timer = self._loop.call_later(self._session.heartbeat_seconds, self._beat)
        previous = self._sending
        if previous is not None:
            if not previous.done():
                return  # the last one is still waiting for room: no pile-up
            if not previous.cancelled():
                previous.exception()  # retrieved: a failed write means the socket is going
        try:
            self._sending = eager.start(self._session.send(_HEARTBEAT))
        except Exception:  # the socket is gone; the receiver is about to notice
            self._sending = None

    def stop(self) -> None:
        self._timer.cancel()

    def pending(self) -> list[asyncio.Future[None]]:
        """The beat still being sent, if any: the session cancels it with its other work."""
        return [self._sending] if self._sending is not None and not self._sending.done() else []
