"""Shortcuts through Hypercorn's send path for what fan-out sends most: a chunk of a streamed
HTTP/1.1 body (every SSE write) and a WebSocket text message. Applied by
royal/hypercorn_fixes.py.

Framing: a chunk goes through h11's state machine, which changes nothing mid-body and cost ~4
µs of each ~40 µs SSE delivery (a profile of W5, bench/README.md). While h11 is sending a
chunked body, the chunk is framed here instead, byte for byte as h11 frames it; anything else
(headers, the end of the body, a newer h11 without ``_writer``) still goes through h11.
Likewise a WebSocket text message is framed here when wsproto would frame it plainly (open, no
extension such as permessage-deflate, no fragmented message under way): wsproto's generic
framing was ~5 µs of each WebSocket delivery (W6).

Writing: when the connection's socket is free (no write under way or waiting for its lock,
the transport neither closing nor paused for flow control), a chunk is written to it from
the stream itself, skipping Hypercorn's three layers of coroutines, its event objects, the
send lock and ``drain`` (W5: 29.4 -> 23.0 µs per delivery). A write that fills the buffer
pauses the transport, so the next one takes the full path and waits in ``drain`` as before.
WebSocket frames keep Hypercorn's path: writing them the same way measured no different (W6,
A/B of 3 runs each), their cost being in Quart's and the session's layers above.
"""

from __future__ import annotations

from typing import Any

import h11
from h11._writers import ChunkedWriter
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.events import RawData
from hypercorn.protocol.events import Body, Data
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.connection import ConnectionState

_stream_send = H11Protocol.stream_send
_http_app_send = HTTPStream.app_send
_ws_app_send = WSStream.app_send


async def send_body_chunks_directly(self: Any, event: Any) -> None:
    """H11Protocol.stream_send, framing a mid-body chunk itself."""
    if type(event) is Body:
        connection = self.connection
        if _mid_chunked_body(connection):
            data = event.data
            if data:  # h11 sends nothing for an empty chunk (it would read as the end)
                await self.send(RawData(data=b"%x\r\n%s\r\n" % (len(data), data)))
            return
    await _stream_send(self, event)


async def write_body_chunks_to_a_free_socket(self: Any, message: Any) -> None:
    """HTTPStream.app_send, writing a mid-body chunk straight to a free socket."""
    if (
        message is not None
        and message["type"] == "http.response.body"
        and message.get("more_body", False)
        and self.state is ASGIHTTPState.RESPONSE
        and not self.closed
    ):
        data = message.get("body", b"")
        protocol = _h11_protocol(self)
        if data and protocol is not None and _mid_chunked_body(protocol.connection):
            if _write_if_free(protocol, b"%x\r\n%s\r\n" % (len(data), data)):
                return
    await _http_app_send(self, message)


async def send_text_frames_directly(self: Any, message: Any) -> None:
    """WSStream.app_send, framing a plain text message itself."""
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


def _mid_chunked_body(connection: Any) -> bool:
    chunked = type(getattr(connection, "_writer", None)) is ChunkedWriter
    return chunked and connection.our_state is h11.SEND_BODY


def _h11_protocol(stream: Any) -> H11Protocol | None:
    """The HTTP/1.1 protocol a stream sends through (None over HTTP/2, or where Hypercorn's
    objects are not the ones this knows)."""
    protocol = getattr(stream.send, "__self__", None)
    return protocol if type(protocol) is H11Protocol else None


def _write_if_free(protocol: H11Protocol, data: bytes) -> bool:
    """Write ``data`` to the protocol's socket if nothing else is writing or waiting to, flow
    control has not paused it and it is not closing; False when it must take the full path
    (which also meets any error the write would, and closes the stream as it should)."""
    writer = _free_writer(protocol)
    if writer is None:
        return False
    try:
        writer.write(data)
    except (ConnectionError, RuntimeError):
        return False
    return True


def _free_writer(protocol: H11Protocol) -> Any:
    server = getattr(protocol.send, "__self__", None)
    if type(server) is not TCPServer:
        return None
    lock = server.send_lock
    if lock.locked() or getattr(lock, "_waiters", True):
        return None
    writer = server.writer
    flow_control = getattr(writer, "_protocol", None)
    if writer.transport.is_closing() or getattr(flow_control, "_paused", True):
        return None
    return writer


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
