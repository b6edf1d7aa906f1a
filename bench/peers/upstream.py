"""A slow upstream service for ``GET /upstream``: every request gets ``{"ok":true}`` 50 ms later.

HTTP/1.1 with keep-alive on the standard library's asyncio alone, so it needs nothing the peers
don't and costs little CPU next to the server under test. It listens where PEER_UPSTREAM_URL
points::

    PEER_UPSTREAM_URL=http://127.0.0.1:8090/ python -m bench.peers.upstream
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

DELAY_SECONDS = 0.05
BODY = b'{"ok":true}'
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(BODY)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer requests on one connection in order until the client closes it."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length, close = _framing(head)
            if length:
                await reader.readexactly(length)
            await asyncio.sleep(DELAY_SECONDS)
            writer.write(HEAD + (b"Connection: close\r\n\r\n" if close else b"\r\n") + BODY)
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass  # the client went away, or sent something this server does not speak
    finally:
        writer.close()


def _framing(head: bytes) -> tuple[int, bool]:
    """The request's Content-Length, and whether the connection ends after the response."""
    request_line, *fields = head.lower().split(b"\r\n")
    length, close = 0, request_line.endswith(b"http/1.0")
    for field in fields:
        name, _, value = field.partition(b":")
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip() != b"keep-alive"
    return length, close


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(handle, host, port, backlog=2048)
    print(f"upstream listening on http://{host}:{port}/", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    address = urlsplit(os.environ["PEER_UPSTREAM_URL"])
    asyncio.run(serve(address.hostname or "127.0.0.1", address.port or 80))


if __name__ == "__main__":
    main()
