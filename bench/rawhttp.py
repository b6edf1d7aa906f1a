"""HTTP/1.1 and Server-Sent Events by hand over asyncio streams: the load generators' wire.

At thousands of streams an HTTP library's per-event overhead would make the client, not the
server, the bottleneck. These pieces do only what the responses under test need: a status
line, a Content-Length or chunked (or close-delimited) body, and Royal's SSE frames.
"""

from __future__ import annotations

import asyncio


def stream_request(
    host: str, port: int, path: str, token: str, last_event_id: int | None = None
) -> bytes:
    """A GET for an event stream; ``last_event_id`` resumes it."""
    resume = "" if last_event_id is None else f"Last-Event-ID: {last_event_id}\r\n"
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n{resume}\r\n"
    ).encode()


def json_request(host: str, port: int, path: str, token: str, body: bytes) -> bytes:
    """A POST of a JSON body."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def read_response(reader: asyncio.StreamReader, what: str) -> bytes:
    """The body of a Content-Length response; any status but 200 raises, quoting the body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    body = await reader.readexactly(length)
    if head.split(b" ", 2)[1] != b"200":
        raise RuntimeError(f"{what}: {head.decode(errors='replace')}{body!r}")
    return body


async def read_stream_head(reader: asyncio.StreamReader, what: str) -> bool:
    """Read a streaming response's head and say whether its body is chunked.

    Any status but 200 raises, quoting the start of the body (an error's JSON).
    """
    head = await reader.readuntil(b"\r\n\r\n")
    if head.split(b" ", 2)[1] != b"200":
        body = await asyncio.wait_for(reader.read(2000), 2)
        raise RuntimeError(f"{what}: {head.decode(errors='replace')}{body!r}")
    return b"transfer-encoding: chunked" in head.lower()


class Dechunker:
    """Undoes chunked transfer encoding as the bytes arrive.

    ``chunks`` counts the chunks, one per server ``send()``, over every body fed since the
    dechunker was made; ``ended`` says the last (empty) chunk of the current body came.
    """

    __slots__ = ("chunks", "ended", "_raw", "_left", "_skip")

    def __init__(self) -> None:
        self.chunks = 0
        self.ended = False
        self._raw = b""  # a partial chunk-size line
        self._left = 0  # bytes left in the current chunk
        self._skip = 0  # bytes of the CRLF after a chunk still to skip

    def start(self) -> None:
        """A new body follows on the same connection."""
        self.ended, self._raw, self._left, self._skip = False, b"", 0, 0

    def feed(self, data: bytes) -> bytes:
        buffer = self._raw + data if self._raw else data
        size = len(buffer)
        position = 0
        parts: list[bytes] = []
        while position < size:
            if self._left:
                end = position + self._left
                if end <= size:
                    parts.append(buffer[position:end])
                    self._left, self._skip, position = 0, 2, end
                else:
                    parts.append(buffer[position:])
                    self._left, position = end - size, size
            elif self._skip:
                taken = min(self._skip, size - position)
                self._skip -= taken
                position += taken
            else:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    break
                chunk_size = int(buffer[position:line_end].partition(b";")[0], 16)
                position = line_end + 2
                self.chunks += 1
                if chunk_size == 0:
                    self.ended = True
                    position = size
                    break
                self._left = chunk_size
        self._raw = buffer[position:]
        return parts[0] if len(parts) == 1 else b"".join(parts)


class Frames:
    """Splits an event stream into frames (blank-line separated), holding back a partial one."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def split(self, data: bytes) -> list[bytes]:
        frames = (self._tail + data).split(b"\n\n") if self._tail else data.split(b"\n\n")
        self._tail = frames.pop()
        return frames


def royal_event(frame: bytes) -> tuple[bytes, int, bytes]:
    """``(event, id, data)`` of a frame that starts with ``id: ``.

    Royal writes ``id: N\\nevent: NAME\\ndata: JSON`` with compact JSON, so the data is one
    line; without an ``event:`` line the event is ``message``.
    """
    newline = frame.index(b"\n")
    name = b"message"
    if frame.startswith(b"event: ", newline + 1):
        name = frame[newline + 8 : frame.index(b"\n", newline + 1)]
    data_at = frame.find(b"\ndata: ", newline)
    return name, int(frame[4:newline]), frame[data_at + 7 :]
