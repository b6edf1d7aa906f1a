"""The shortcuts frame HTTP chunks and WebSocket text exactly as h11 and wsproto do, and only
where those would frame them plainly; the lighter app queue keeps Hypercorn's bound."""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import pytest
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.config import Config
from hypercorn.protocol.events import Body, EndBody
from hypercorn.protocol.h11 import H11Protocol
from wsproto import ConnectionType
from wsproto.connection import Connection as WSConnection
from wsproto.events import CloseConnection, TextMessage
from wsproto.extensions import PerMessageDeflate

from royal.hypercorn_light import spawn_app_with_a_light_queue
from royal.hypercorn_shortcuts import (
    _free_writer,
    _h11_protocol,
    _mid_chunked_body,
    _plain_text_frame,
    send_body_chunks_directly,
)


class Protocol:
    """What the shortcut uses of Hypercorn's H11Protocol: its h11 connection and its send."""

    _send_h11_event = H11Protocol._send_h11_event
    stream_send = send_body_chunks_directly

    def __init__(self, connection: h11.Connection) -> None:
        self.connection = connection
        self.written: list[bytes] = []

    async def send(self, event: Any) -> None:
        self.written.append(event.data)


def responding(headers: list[tuple[str, str]]) -> h11.Connection:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(b"GET /streams/alerts HTTP/1.1\r\nHost: royal\r\n\r\n")
    assert isinstance(connection.next_event(), h11.Request)
    connection.send(h11.Response(status_code=200, headers=headers))
    return connection


CHUNKS = [b"data: 1\n\n", b"", b"x" * 70_000, "é ✓".encode()]


async def test_chunks_are_framed_byte_for_byte_as_h11_frames_them() -> None:
    ours = Protocol(responding([("content-type", "text/event-stream")]))
    h11_alone = responding([("content-type", "text/event-stream")])
    expected = b""
    for chunk in CHUNKS:
        await ours.stream_send(Body(stream_id=1, data=chunk))
        expected += h11_alone.send(h11.Data(data=chunk)) or b""
    assert b"".join(ours.written) == expected

    await ours.stream_send(EndBody(stream_id=1))  # through h11: its state is still right
    assert ours.written[-1] == h11_alone.send(h11.EndOfMessage()) == b"0\r\n\r\n"
    assert ours.connection.our_state is h11_alone.our_state is h11.DONE


async def test_a_body_with_a_content_length_still_goes_through_h11() -> None:
    ours = Protocol(responding([("content-length", "5")]))
    await ours.stream_send(Body(stream_id=1, data=b"hello"))
    assert ours.written == [b"hello"]  # no chunk framing
    await ours.stream_send(EndBody(stream_id=1))
    assert ours.connection.our_state is h11.DONE


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 200_000])
def test_text_frames_are_framed_byte_for_byte_as_wsproto_frames_them(size: int) -> None:
    text = ("é" * size)[: max(0, size - size // 3)] + "x" * (size // 3)
    connection = WSConnection(ConnectionType.SERVER)
    assert _plain_text_frame(connection, text) == connection.send(TextMessage(data=text))


def test_wsproto_still_frames_what_is_not_plain() -> None:
    negotiated = PerMessageDeflate()
    negotiated.accept("permessage-deflate")  # as when a client offers it
    deflating = WSConnection(ConnectionType.SERVER, extensions=[negotiated])
    assert deflating.send(TextMessage(data="hello")) != b"\x81\x05hello"  # compressed
    assert _plain_text_frame(deflating, "hello") is None
    fragmenting = WSConnection(ConnectionType.SERVER)
    fragmenting.send(TextMessage(data="part", message_finished=False))
    assert _plain_text_frame(fragmenting, "rest") is None  # a continuation frame is due
    closing = WSConnection(ConnectionType.SERVER)
    closing.send(CloseConnection(code=1000))
    assert _plain_text_frame(closing, "late") is None


async def test_the_app_queue_hands_messages_over_in_order_within_hypercorns_bound() -> None:
    """A client that floods an app which is not reading is held back at max_app_queue_size
    messages, as with Hypercorn's asyncio.Queue; the app gets them in order."""
    config = Config()
    config.max_app_queue_size = 3
    received: list[Any] = []
    reading = asyncio.Event()
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any, *_: Any) -> None:
        await reading.wait()
        while len(received) < 5:
            received.append(await receive())

    async def server_send(message: Any) -> None:
        sent.append(message)

    async with TaskGroup(asyncio.get_running_loop()) as group:
        put = await spawn_app_with_a_light_queue(group, app, config, {"type": "http"}, server_send)
        for number in range(3):
            await asyncio.wait_for(put({"n": number}), 1)
        fourth = asyncio.ensure_future(put({"n": 3}))
        await asyncio.sleep(0.05)
        assert not fourth.done()  # the bound holds the flood back
        reading.set()
        await asyncio.wait_for(fourth, 1)
        await asyncio.wait_for(put({"n": 4}), 1)
    assert received == [{"n": number} for number in range(5)]
    assert sent == [None]  # Hypercorn's _handle ends the app's side as before


class Transport:
    def __init__(self) -> None:
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing


class FlowControl:
    _paused = False


class Writer:
    """What _free_writer reads of asyncio's StreamWriter."""

    def __init__(self) -> None:
        self.transport = Transport()
        self._protocol = FlowControl()


class Stream:
    def __init__(self, send: Any) -> None:
        self.send = send


def hypercorn_objects(connection: h11.Connection) -> tuple[Stream, H11Protocol, TCPServer, Writer]:
    """An HTTP stream, its H11Protocol and TCPServer, wired as Hypercorn wires them (the
    stream sends through the protocol's stream_send, the protocol through the server's
    protocol_send), without a socket."""
    server = object.__new__(TCPServer)
    server.send_lock = asyncio.Lock()
    writer = Writer()
    server.writer = writer  # type: ignore[assignment]
    protocol = object.__new__(H11Protocol)
    protocol.connection = connection
    protocol.send = server.protocol_send
    return Stream(protocol.stream_send), protocol, server, writer


async def test_a_chunk_goes_straight_to_the_socket_only_when_nothing_else_is_writing() -> None:
    stream, protocol, server, writer = hypercorn_objects(
        responding([("Transfer-Encoding", "chunked")])
    )
    assert _h11_protocol(stream) is protocol
    assert _mid_chunked_body(protocol.connection)
    assert _free_writer(protocol) is writer
    async with server.send_lock:  # a write under way (or waiting in drain)
        assert _free_writer(protocol) is None
    writer._protocol._paused = True  # the client reads slowly: drain must wait
    assert _free_writer(protocol) is None
    writer._protocol._paused = False
    writer.transport.closing = True
    assert _free_writer(protocol) is None


async def test_a_body_that_is_not_chunked_or_not_http_1_takes_hypercorns_path() -> None:
    _, protocol, _, _ = hypercorn_objects(responding([("Content-Length", "10")]))
    assert not _mid_chunked_body(protocol.connection)

    async def h2_send(event: Any) -> None:
        """Not an H11Protocol's."""

    assert _h11_protocol(Stream(h2_send)) is None
