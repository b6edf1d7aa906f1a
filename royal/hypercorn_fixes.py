"""Two fixes to Hypercorn (0.18), two shortcuts and two lighter parts that ``royal serve``
applies in each worker.

When a client closes an idle keep-alive connection, Hypercorn's asyncio server stops reading
but leaves the connection's idle timer running: the socket and three tasks stay until
``keep_alive_timeout`` (75 s here) runs out. Clients that reconnect often (EventSource after
every drain or network change, load balancers' health checks) then pile up thousands of dead
connections. Once the peer has closed, no request can arrive, so the timer is stopped and the
connection ends at once. (tests/reliability/test_reconnects.py)

When the kernel gives up on a peer (``TCP_USER_TIMEOUT``, set by royal.server so that vanished
clients are found), closing the connection raises ``TimeoutError`` (ETIMEDOUT), which Hypercorn
does not expect: every such connection printed a traceback. The peer is gone either way.
(tests/reliability/test_hostile_clients.py)

The shortcut: a chunk of a streamed HTTP/1.1 body (every SSE write) goes through h11's state
machine, which changes nothing mid-body and cost ~4 µs of each ~40 µs SSE delivery (a profile
of W5, bench/README.md). While h11 is sending a chunked body, the chunk is framed here
instead, byte for byte as h11 frames it; anything else (headers, the end of the body, other
writers, a newer h11 without ``_writer``) still goes through h11. Likewise a WebSocket text
message is framed here when wsproto would frame it plainly (open, no extension such as
permessage-deflate, no fragmented message under way): wsproto's generic framing was ~5 µs of
each WebSocket delivery (W6).

Further: when such a chunk finds the connection's socket free (no write under way or waiting
for its lock, the transport neither closing nor paused for flow control), it is written to the
socket from the stream itself, skipping Hypercorn's three layers of coroutines, its event
objects, the send lock and ``drain`` (a third of an SSE delivery's CPU in a py-spy profile of
W5). A write that fills the buffer pauses the transport, so the next chunk takes the full
path and waits in ``drain`` as before.

The lighter parts: every connection's queue of ASGI messages for the app and the event h11
waits on are royal/message_queue.py's list-backed forms of asyncio.Queue and asyncio.Event,
which allocate four deques and one up front (~3.8 KB of each idle SSE stream and WebSocket).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import h11
from h11._writers import ChunkedWriter
from hypercorn.asyncio import task_group
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.events import RawData
from hypercorn.protocol.events import Body, Data
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.connection import ConnectionState

from royal.message_queue import Event, MessageQueue

_read_data = TCPServer._read_data
_close = TCPServer._close
_stream_send = H11Protocol.stream_send
_ws_app_send = WSStream.app_send
_http_app_send = HTTPStream.app_send


async def _read_until_closed_then_stop_the_idle_timer(self: Any) -> None:
    await _read_data(self)
    await self.idle_task.stop()


async def _close_even_if_the_peer_timed_out(self: Any) -> None:
    try:
        await _close(self)
    except OSError:  # TimeoutError and kin: nothing is left to close
        pass


async def _send_body_chunks_directly(self: Any, event: Any) -> None:
    if type(event) is Body:
        connection = self.connection
        writer = getattr(connection, "_writer", None)
        if connection.our_state is h11.SEND_BODY and type(writer) is ChunkedWriter:
            data = event.data
            if data:  # h11 sends nothing for an empty chunk (it would read as the end)
                await self.send(RawData(data=b"%x\r\n%s\r\n" % (len(data), data)))
            return
    await _stream_send(self, event)


async def _write_body_chunks_to_a_free_socket(self: Any, message: Any) -> None:
    if (
        message is not None
        and message["type"] == "http.response.body"
        and message.get("more_body", False)
        and self.state is ASGIHTTPState.RESPONSE
        and not self.closed
    ):
        data = message.get("body", b"")
        writer = _free_writer(self) if data else None
        if writer is not None:
            try:
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                return
            except (ConnectionError, RuntimeError):
                pass  # the full path meets the same error and closes the stream as it should
    await _http_app_send(self, message)


def _free_writer(stream: Any) -> Any:
    """The socket's StreamWriter when a chunk may go straight to it: HTTP/1.1 mid chunked body
    (as for ``_send_body_chunks_directly``), nothing else writing or waiting to, no flow
    control pause, not closing. None otherwise, or where Hypercorn's objects are not the
    ones this knows."""
    protocol = getattr(stream.send, "__self__", None)
    if type(protocol) is not H11Protocol:
        return None  # HTTP/2, or another protocol: the full path
    connection = protocol.connection
    chunked = type(getattr(connection, "_writer", None)) is ChunkedWriter
    if connection.our_state is not h11.SEND_BODY or not chunked:
        return None
    server = getattr(protocol.send, "__self__", None)
    if type(server) is not TCPServer:
        return None
    lock = server.send_lock
    if lock.locked() or getattr(lock, "_waiters", True):
        return None
    writer = server.writer
    if writer.transport.is_closing() or getattr(
        getattr(writer, "_protocol", None), "_paused", True
    ):
        return None
    return writer


async def _send_text_frames_directly(self: Any, message: Any) -> None:
    if (
        message is not None
        and message["type"] == "websocket.send"
        and self.state is ASGIWebsocketState.CONNECTED
        and not self.closed
        and message.get("bytes") is None
        and isinstance(message.get("text"), str)
    ):
        frame = _plain_text_frame(self.connection, message["text"])
        if frame is not None:
            await self.send(Data(stream_id=self.stream_id, data=frame))
            return
    await _ws_app_send(self, message)


def _plain_text_frame(connection: Any, text: str) -> bytes | None:
    """The frame wsproto would send for ``text``, or None where its framing is not plain."""
    frames = getattr(connection, "_proto", None)
    if (
        getattr(connection, "state", None) is not ConnectionState.OPEN
        or frames is None
        or getattr(frames, "extensions", True)
        or getattr(frames, "client", True)
        or getattr(frames, "_outbound_opcode", True) is not None
    ):
        return None
    payload = text.encode()
    size = len(payload)
    if size <= 125:
        return bytes((0x81, size)) + payload  # FIN and the text opcode; servers do not mask
    if size <= 0xFFFF:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


async def _spawn_app_with_a_light_queue(
    self: TaskGroup, app: Any, config: Config, scope: Any, send: Any
) -> Callable[[Any], Awaitable[None]]:
    """Hypercorn's TaskGroup.spawn_app with a MessageQueue: the same bound, no deques."""
    app_queue = MessageQueue(config.max_app_queue_size)

    def _call_soon(func: Callable[..., Any], *args: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(func(*args), self._loop).result()

    self.spawn(
        task_group._handle,
        app,
        config,
        scope,
        app_queue.get,
        send,
        partial(self._loop.run_in_executor, None),
        _call_soon,
    )
    return app_queue.put


class LightEventWrapper:
    """Hypercorn's EventWrapper (its async Event interface) around a list-backed Event."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = Event()

    async def clear(self) -> None:
        self._event.clear()

    async def wait(self) -> None:
        await self._event.wait()

    async def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


def apply() -> None:
    """Patch Hypercorn's TCPServer, H11Protocol, WSStream, TaskGroup and WorkerContext
    (idempotent)."""
    TCPServer._read_data = _read_until_closed_then_stop_the_idle_timer  # type: ignore[method-assign]
    TCPServer._close = _close_even_if_the_peer_timed_out  # type: ignore[method-assign]
    H11Protocol.stream_send = _send_body_chunks_directly  # type: ignore[method-assign]
    WSStream.app_send = _send_text_frames_directly  # type: ignore[method-assign]
    HTTPStream.app_send = _write_body_chunks_to_a_free_socket  # type: ignore[method-assign]
    TaskGroup.spawn_app = _spawn_app_with_a_light_queue  # type: ignore[method-assign]
    WorkerContext.event_class = LightEventWrapper
