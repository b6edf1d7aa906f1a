"""The Flask peer's realtime routes, for Gunicorn's gevent worker.

Each SSE stream is a generator blocked on its own gevent queue, the usual way to serve SSE
from Flask without Redis; each WebSocket is a flask-sock handler (simple-websocket) doing the
same. Both need gevent's monkey-patching: under a threaded worker every stream would hold a
thread, and gevent queues do not wake across threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from typing import Generic, TypeVar

import gevent  # type: ignore[import-untyped]  # gevent ships no type hints
from flask import Blueprint, Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from flask_sock import Sock  # type: ignore[import-untyped]  # flask-sock ships no type hints
from gevent.queue import Empty, Full, Queue  # type: ignore[import-untyped]
from simple_websocket import (  # type: ignore[import-untyped]  # no type hints either
    ConnectionClosed,
    Server,
)

from bench.peers.contract import Published, PublishIn
from bench.peers.fanout import (
    HEARTBEAT_SECONDS,
    INBOX_SIZE,
    PING_FRAME,
    RETRY_FRAME,
    TOPIC,
    Event,
    Hub,
    reply_to,
)

T = TypeVar("T")
bp = Blueprint("streams", __name__)
sock = Sock()
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # Royal's


class Inbox(Generic[T]):
    """A subscriber's bounded gevent queue."""

    def __init__(self) -> None:
        self._queue = Queue(INBOX_SIZE)
        self.closed = False

    def offer(self, item: T, /) -> bool:
        try:
            self._queue.put_nowait(item)
        except Full:
            return False
        return True

    def close(self) -> None:
        self.closed = True
        with suppress(Full):  # a full queue has no reader waiting to be woken
            self._queue.put_nowait(None)

    def items(self, heartbeat: float | None = None) -> Iterator[T | None]:
        """Items as they come, None after ``heartbeat`` seconds without one; ends when closed."""
        while True:
            try:
                item: T | None = self._queue.get(timeout=heartbeat)
            except Empty:
                yield None
                continue
            if item is None or self.closed:
                return
            yield item


def init_app(app: Flask) -> None:
    app.extensions["peer.hub"] = Hub()
    app.register_blueprint(bp)


def get_hub() -> Hub:
    hub: Hub = current_app.extensions["peer.hub"]
    return hub


@bp.get(f"/streams/{TOPIC}")
def stream_alerts() -> ResponseReturnValue:
    """Server-Sent Events: ``retry:``, then every event published from now on."""
    # The generator runs after this view returns, outside the app context: take the hub now.
    return Response(_frames(get_hub()), mimetype="text/event-stream", headers=SSE_HEADERS)


def _frames(hub: Hub) -> Iterator[bytes]:
    # Gunicorn closes the generator when a write fails, which leaves the `with`.
    with hub.subscribe(Inbox[Event]()) as inbox:
        yield RETRY_FRAME
        for event in inbox.items(HEARTBEAT_SECONDS):
            yield PING_FRAME if event is None else event.sse


@bp.post(f"/streams/{TOPIC}")
def publish_alert() -> ResponseReturnValue:
    """Send one event to every open SSE stream and WebSocket of this process."""
    body = PublishIn.model_validate_json(request.get_data())
    event = get_hub().publish(body.event, body.data)
    return Published(id=event.id, topic=TOPIC, event=event.event).model_dump(), 201


@sock.route("/ws", bp=bp)  # type: ignore[untyped-decorator]
def websocket(ws: Server) -> None:
    """Every event published from now on, as a JSON text message."""
    with get_hub().subscribe(Inbox[Event | str]()) as inbox:
        reader = gevent.spawn(_answer_client, ws, inbox)
        try:
            for item in inbox.items():
                if item is not None:
                    ws.send(item.ws if isinstance(item, Event) else item)
        finally:
            reader.kill()


def _answer_client(ws: Server, inbox: Inbox[Event | str]) -> None:
    """Read the client's messages (acknowledging a subscribe) until it goes away."""
    try:
        while True:
            message = ws.receive()
            reply = reply_to(message) if isinstance(message, str) else None
            if reply is not None:
                inbox.offer(reply)
    except ConnectionClosed:
        inbox.close()
