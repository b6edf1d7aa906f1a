"""Quart's WebSocket classes with a send path cheap enough for fan-out.

Quart's ``websocket.send`` starts with ``await asyncio.sleep(0)``, so that an application
looping over sends lets the event loop breathe. Royal's ``/ws`` sends every live event from
the stream dispatcher (royal/streams/eager.py), where that yield turned each send into a task
of its own and a loop turn per subscriber: most of a WebSocket delivery's cost in the
broadcast benchmark (W6, bench/README.md). ``send_now`` is the send without it, for code that
yields elsewhere; ``send`` keeps Quart's behaviour. The ``websocket_sent`` signal is sent only
when something listens to it.

An open socket also holds less than Quart's: received messages wait in a ``MessageQueue``
(an asyncio.Queue holds four deques, ~3 KB), and the handler runs in the connection's own
task, with a task only for the receiving (royal/watching.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, WebsocketScope
from quart import Quart
from quart.asgi import ASGIWebsocketConnection
from quart.signals import websocket_sent
from quart.wrappers import Websocket

from royal.watching import run_while_watching


class RoyalWebsocket(Websocket):
    async def send_now(self, data: str | bytes) -> None:
        """Send a message on an accepted WebSocket without first yielding to the loop."""
        await self._send(data)


class MessageQueue:
    """What Quart uses of asyncio.Queue (``put`` and ``get``, unbounded), in a list."""

    __slots__ = ("_items", "_head", "_getters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._head = 0  # the next item to get: a list pops from the front in O(n)
        self._getters: list[asyncio.Future[None]] = []

    async def put(self, item: Any) -> None:
        self._items.append(item)
        self._wake_a_getter()

    async def get(self) -> Any:
        while self._head == len(self._items):
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                if getter.done() and not getter.cancelled():
                    self._wake_a_getter()  # it was woken for an item: pass that on
                raise
            finally:
                if getter in self._getters:
                    self._getters.remove(getter)
        item, self._items[self._head] = self._items[self._head], None
        self._head += 1
        if self._head == len(self._items):
            self._items.clear()
            self._head = 0
        return item

    def _wake_a_getter(self) -> None:
        for getter in self._getters:
            if not getter.done():
                getter.set_result(None)
                return


class RoyalWebsocketConnection(ASGIWebsocketConnection):
    def __init__(self, app: Quart, scope: WebsocketScope) -> None:
        super().__init__(app, scope)
        self.queue = MessageQueue()  # type: ignore[assignment]

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """Quart's, with the handler in this task: it ends when the handler does, and the
        handler is cancelled when the client's side ends first."""
        websocket = self._create_websocket_from_scope(send)
        await run_while_watching(
            self.handle_websocket(websocket, send), self.handle_messages(receive)
        )

    async def send_data(self, send: ASGISendCallable, data: str | bytes) -> None:
        if isinstance(data, str):
            await send({"type": "websocket.send", "bytes": None, "text": data})
        else:
            await send({"type": "websocket.send", "bytes": data, "text": None})
        if websocket_sent.receivers:
            await websocket_sent.send_async(data)
