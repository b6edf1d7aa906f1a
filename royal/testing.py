"""Helpers for testing Royal, and apps built on it, over real sockets (needs the test extra).

``LiveServer`` runs ``royal serve`` (real Hypercorn, any number of workers) in a subprocess on a
socket it binds itself on 127.0.0.1 (or ``host``), so there is no race for a free port and a
restarted server keeps the same address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from royal.streams.sse import ParsedEvent, SSEParser


class LiveServer:
    """Royal under Hypercorn on 127.0.0.1 (or another local IPv4 ``host``, one that clients in
    a network namespace reach, say); ``url`` is its base address."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        workers: int = 1,
        startup_timeout: float = 30.0,
        cwd: str | Path | None = None,
        app: str | None = None,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.env = {"ROYAL_ENV": "testing", **(env or {})}
        self.app = app  # royal serve --app: another factory than royal:create_app()
        # royal serve --certfile/--keyfile: HTTPS, and HTTP/2 for clients that offer it (ALPN).
        if (certfile is None) != (keyfile is None):
            raise ValueError("certfile and keyfile go together")
        self.tls = None if certfile is None else (str(certfile), str(keyfile))
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.cwd = cwd
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self._socket.set_inheritable(True)
        self.port: int = self._socket.getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://{host}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        handle, path = tempfile.mkstemp(prefix="royal-live-", suffix=".log")
        os.close(handle)
        self.log_path = Path(path)

    def start(self) -> LiveServer:
        """Start the server and wait until /healthz answers."""
        fd = self._socket.fileno()
        command = [sys.executable, "-m", "royal", "serve", "--bind", f"fd://{fd}"]
        command += ["--workers", str(self.workers)]
        if self.app is not None:
            command += ["--app", self.app]
        if self.tls is not None:
            command += ["--certfile", self.tls[0], "--keyfile", self.tls[1]]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env={**os.environ, **self.env},
                pass_fds=(fd,),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,  # its own process group: kill() takes the workers too
            )
        self._wait_until_live()
        return self

    def _wait_until_live(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"royal serve exited with {self.process.returncode}:\n{self.output()}"
                )
            # Every worker logs "Running on" once it serves; wait for all of them.
            if self.output().count("Running on") >= self.workers and self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"royal serve did not answer within {self.startup_timeout} s:\n{self.output()}"
        )

    def _answers(self) -> bool:
        context = None
        if self.tls is not None:
            # Only "is it up?": the certificate is the test's to check, with its own CA.
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            with urllib.request.urlopen(
                f"{self.url}/healthz", timeout=1, context=context
            ) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal the server (SIGTERM: graceful) and wait for it; kill it if it hangs."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # the workers too
                process.wait()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL the server and every worker at once, as a crash or a lost machine would:
        no drain, no goodbye to clients. The socket stays open, so start() serves the same URL
        and clients that reconnect meanwhile wait in its backlog."""
        if self.process is None:
            return
        process, self.process = self.process, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def restart(self) -> LiveServer:
        """Stop and start again on the same socket: clients reconnect to the same URL."""
        self.stop()
        return self.start()

    def worker_pids(self) -> list[int]:
        """The pids of the server's Hypercorn workers (Linux: read from /proc)."""
        assert self.process is not None, "start() first"
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [
            int(child)
            for child in children
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
        ]

    def output(self) -> str:
        """Everything the server printed so far (access log, errors)."""
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        self.stop()
        self._socket.close()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class SSEClient:
    """Reads a Royal SSE stream over real HTTP, and resumes it from the last id it saw.

    ``async with SSEClient(url, token=...) as stream: events = await stream.read(10)``
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        last_event_id: str | int | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self._shared_client = client  # reuse one across resumes: each new one costs ~40 ms CPU
        self.token = token
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.parser = SSEParser()
        self.parser.last_event_id = None if last_event_id is None else str(last_event_id)
        self.response: httpx.Response | None = None
        self._client: httpx.AsyncClient | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._next_chunk: asyncio.Task[bytes] | None = None
        self._pending: list[ParsedEvent] = []

    @property
    def last_event_id(self) -> str | None:
        return self.parser.last_event_id

    async def __aenter__(self) -> SSEClient:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> SSEClient:
        headers = {"Accept": "text/event-stream", **self.headers}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        self._client = self._shared_client or httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout, read=None)
        )
        request = self._client.build_request("GET", self.url, headers=headers)
        self.response = await self._client.send(request, stream=True)
        self._chunks = self.response.aiter_raw()
        return self

    async def read(self, count: int, timeout: float | None = None) -> list[ParsedEvent]:
        """The next ``count`` events; raises TimeoutError (naming how many came) if they don't."""
        assert self._chunks is not None, "open() first"
        events: list[ParsedEvent] = []
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(events) < count:
            if self._pending:
                events.append(self._pending.pop(0))
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._pending[:0] = events  # keep what came for the next read
                raise TimeoutError(f"got {len(events)} of {count} events")
            # The pending read survives a timeout: cancelling it would close httpx's iterator.
            if self._next_chunk is None:
                self._next_chunk = asyncio.ensure_future(anext(self._chunks))
            done, _ = await asyncio.wait({self._next_chunk}, timeout=remaining)
            if not done:
                continue
            task, self._next_chunk = self._next_chunk, None
            try:
                chunk = task.result()
            except StopAsyncIteration:
                raise EOFError(f"stream ended after {len(events)} of {count} events") from None
            self._pending.extend(self.parser.feed(chunk))
        return events

    async def read_until_closed(self, timeout: float | None = None) -> list[ParsedEvent]:
        """Every event until the server ends the stream."""
        assert self._chunks is not None, "open() first"

        async def drain() -> list[ParsedEvent]:
            assert self._chunks is not None
            events, self._pending = self._pending, []
            if self._next_chunk is not None:
                task, self._next_chunk = self._next_chunk, None
                try:
                    events.extend(self.parser.feed(await task))
                except StopAsyncIteration:
                    return events
            async for chunk in self._chunks:
                events.extend(self.parser.feed(chunk))
            return events

        return await asyncio.wait_for(drain(), self.timeout if timeout is None else timeout)

    async def close(self) -> None:
        if self._next_chunk is not None:
            self._next_chunk.cancel()
            await asyncio.gather(self._next_chunk, return_exceptions=True)
            self._next_chunk = None
        if self.response is not None:
            await self.response.aclose()
        if self._client is not None and self._client is not self._shared_client:
            await self._client.aclose()
        self.response, self._client, self._chunks = None, None, None

    async def resume(self) -> SSEClient:
        """Drop this connection and open a new one from the last id received. Events that
        arrived but were not read yet stay readable: the server will not send them again."""
        await self.close()
        return await self.open()


class WSClient:
    """Speaks Royal's /ws protocol over a real WebSocket."""

    def __init__(self, url: str, *, token: str | None = None, origin: str | None = None) -> None:
        self.url = url
        self.token = token
        self.origin = origin
        self.connection: ClientConnection | None = None

    async def __aenter__(self) -> WSClient:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.connection = await ws_connect(
            self.url,
            additional_headers=headers,
            origin=self.origin,  # type: ignore[arg-type]
            max_size=None,
            max_queue=None,  # never stop reading: the close frame may sit behind unread events
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def send(self, message: Mapping[str, Any]) -> None:
        assert self.connection is not None
        await self.connection.send(json.dumps(message))

    async def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.connection is not None
        message: dict[str, Any] = json.loads(
            await asyncio.wait_for(self.connection.recv(), timeout)
        )
        return message

    async def subscribe(
        self, topics: list[str], last_event_id: int | None = None
    ) -> dict[str, Any]:
        """Subscribe and wait for the acknowledgement (or the error)."""
        await self.send({"type": "subscribe", "topics": topics, "last_event_id": last_event_id})
        return await self.receive()

    async def events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next ``count`` ``event`` messages (other messages are skipped)."""
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(events) < count:
            message = await self.receive(max(deadline - time.monotonic(), 0.001))
            if message.get("type") == "event":
                events.append(message)
        return events
