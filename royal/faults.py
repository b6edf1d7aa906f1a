"""A TCP proxy that can take a server away: the database faults of tests and bench/soak.py.

Put it between Royal and PostgreSQL and ``cut()`` it: every open connection is closed and new
ones are refused, which is what clients see when PostgreSQL stops. ``restore()`` brings it
back on the same port. ``sever()`` closes the open connections only (a killed backend, or a
LISTEN connection dropped by a NAT), and new connections keep working.

It runs its own event loop in a thread, so a test can cut the database while it is itself
blocked waiting for the server under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from types import TracebackType


class FaultProxy:
    """``127.0.0.1:<port>`` forwarding to ``upstream``; ``url_for()`` rewrites a database URL."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        self.port: int = listener.getsockname()[1]
        self._listener: socket.socket | None = listener
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections_made = 0

    def url_for(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by the proxy's."""
        scheme, rest = database_url.split("://", 1)
        credentials, _, location = rest.rpartition("@")
        path = location.split("/", 1)[1] if "/" in location else ""
        prefix = f"{credentials}@" if credentials else ""
        return f"{scheme}://{prefix}127.0.0.1:{self.port}/{path}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        """The server is gone: close every connection and refuse new ones."""
        self._call(self._cut())

    def restore(self) -> None:
        """The server is back, on the same address."""
        self._call(self._listen())

    def sever(self) -> None:
        """Close the open connections; new ones are still accepted."""
        self._call(self._close_connections())

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._cut())
            self._call(self._settle())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        if self._server is not None:
            return
        sock, self._listener = self._listener, None
        if sock is None:  # restored after a cut: bind the same port again
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
        self._server = await asyncio.start_server(self._accept, sock=sock)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._close_connections()

    async def _settle(self) -> None:
        """Let the closed connections' pipes finish before the loop stops."""
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=5)

    async def _close_connections(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)  # a cut while the upstream connects must close this one too
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._writers.discard(writer)
            writer.transport.abort()
            return
        if writer not in self._writers:  # cut meanwhile
            up_writer.transport.abort()
            return
        self.connections_made += 1
        self._writers.add(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.transport.abort()
