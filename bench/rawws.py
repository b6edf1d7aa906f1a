"""WebSocket (RFC 6455) by hand over asyncio streams: the load generator's other wire.

A thousand sockets at twenty events a second each are 20,000 messages a second on one core;
a WebSocket library's per-message overhead would make the client the bottleneck. These pieces
do only what the ``/ws`` endpoints under test need: the upgrade handshake, masked client
frames, and splitting the server's unmasked frames into messages (no extensions: the request
offers none, so a server may not use any).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


class ProtocolError(Exception):
    """The server broke RFC 6455 (or used an extension nobody negotiated)."""


def new_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_value(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def upgrade_request(host: str, port: int, path: str, token: str, key: str) -> bytes:
    """The GET that opens a WebSocket, authenticated as Royal's streams are: a bearer token."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()


async def read_upgrade(reader: asyncio.StreamReader, key: str, what: str) -> None:
    """Read the handshake's answer; anything but a 101 with the right accept value raises,
    quoting the start of an error's body."""
    head = await reader.readuntil(b"\r\n\r\n")
    if head.split(b" ", 2)[1] != b"101":
        body = await asyncio.wait_for(reader.read(2000), 2)
        raise RuntimeError(f"{what}: {head.decode(errors='replace')}{body!r}")
    expected = f"sec-websocket-accept: {accept_value(key)}".lower().encode()
    if expected not in head.lower():
        raise ProtocolError(f"{what}: no or a wrong Sec-WebSocket-Accept in {head!r}")


def client_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame as a client must send it: masked (with a random key unless given)."""
    mask = os.urandom(4) if mask is None else mask
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + mask + _masked(payload, mask)


def _masked(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask``, as one big-integer XOR (no Python loop)."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


class FrameParser:
    """Splits the server's bytes into messages ``(opcode, payload)`` as they arrive.

    Fragmented messages are joined (reported with their first frame's opcode); control frames
    (close, ping, pong) come out as they are, even between fragments. A partial frame waits
    for the next ``feed``. ``frames`` counts the frames seen.
    """

    __slots__ = ("frames", "_buffer", "_fragments", "_opcode")

    def __init__(self) -> None:
        self.frames = 0
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._opcode = 0  # the opcode of the message being fragmented

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer + data if self._buffer else data
        size = len(buffer)
        position = 0
        messages: list[tuple[int, bytes]] = []
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            if first & 0x70 or second & 0x80:
                raise ProtocolError(f"reserved bits or a mask in a server frame: {first:#x}")
            length = second & 0x7F
            head = 4 if length == 126 else 10 if length == 127 else 2  # extended length
            if size - position < head:
                break
            if head > 2:
                length = int.from_bytes(buffer[position + 2 : position + head], "big")
            end = position + head + length
            if end > size:
                break
            self.frames += 1
            self._message(first, buffer[position + head : end], messages)
            position = end
        self._buffer = buffer[position:]
        return messages

    def _message(self, first: int, payload: bytes, messages: list[tuple[int, bytes]]) -> None:
        opcode, final = first & 0x0F, first & 0x80
        if opcode >= CLOSE or (final and opcode != CONTINUATION and not self._fragments):
            messages.append((opcode, payload))  # the usual case: one frame, one message
            return
        if opcode != CONTINUATION:
            if self._fragments:
                raise ProtocolError("a new message began before the fragmented one ended")
            self._opcode = opcode
        elif not self._fragments:
            raise ProtocolError("a continuation frame without a message to continue")
        self._fragments.append(payload)
        if final:
            messages.append((self._opcode, b"".join(self._fragments)))
            self._fragments = []


def event_envelope(message: bytes) -> tuple[bytes, int, bytes]:
    """``(event, id, data)`` of an ``event`` message, sliced out without parsing the JSON.

    Royal and the peers both write compact JSON in this order:
    ``{"type":"event","topic":T,"event":NAME,"id":N,"data":DATA}``, so the data is everything
    between ``"data":`` and the closing brace. ``ValueError`` for any other shape.
    """
    name_at = message.index(b'"event":"') + 9
    name_end = message.index(b'"', name_at)
    id_at = message.index(b'"id":', name_end) + 5
    data_at = message.index(b',"data":', id_at)
    return message[name_at:name_end], int(message[id_at:data_at]), message[data_at + 8 : -1]
