"""Quart's WebSocket classes with a send path cheap enough for fan-out.

Quart's ``websocket.send`` starts with ``await asyncio.sleep(0)``, so that an application
looping over sends lets the event loop breathe. Royal's ``/ws`` sends every live event from
the stream dispatcher (royal/streams/eager.py), where that yield turned each send into a task
of its own and a loop turn per subscriber: most of a WebSocket delivery's cost in the
broadcast benchmark (W6, bench/README.md). ``send_now`` is the send without it, for code that
yields elsewhere; ``send`` keeps Quart's behaviour. The ``websocket_sent`` signal is sent only
when something listens to it.

An open socket also holds less than Quart's: received messages wait in a ``MessageQueue``
(royal/message_queue.py), and the handler runs in the connection's own task, with a task only
for the receiving (royal/watching.py).
"""

from __future__ import annotations

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, WebsocketScope
from quart import Quart
from quart.asgi import ASGIWebsocketConnection
from quart.signals import websocket_sent
from quart.wrappers import Websocket

from royal.message_queue import MessageQueue
from royal.watching import run_while_watching


class RoyalWebsocket(Websocket):
    async def send_now(self, data: str | bytes) -> None:
        """Send a message on an accepted WebSocket without first yielding to the loop."""
        await self._send(data)


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
