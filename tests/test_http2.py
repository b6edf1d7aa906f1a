"""HTTPS and HTTP/2 straight from `royal serve --certfile/--keyfile`.

Browsers open at most six HTTP/1.1 connections per origin, so a dashboard with more
EventSources than that stalls; over HTTP/2 every stream shares one connection. These tests
serve Royal with a throwaway certificate (trustme: made here, no network) and check that 20 SSE
streams from one client travel on one TCP connection and all receive a published event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import h2.connection
import h2.events
import httpx
import pytest
import trustme
from h2.config import H2Configuration
from h2.errors import ErrorCodes

from royal.testing import LiveServer, SSEClient
from tests.conftest import bearer, seed_users

STREAMS = 20


@pytest.fixture(name="ca", scope="module")
def _ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(name="tls_files")
def _tls_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 (chain included) and its key, as PEM files."""
    issued = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(keyfile))
    return certfile, keyfile


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A new client context that trusts only the throwaway CA (hostnames checked as usual).
    One per client: httpx sets its ALPN protocols on the context it is given."""
    return ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())


@pytest.fixture(name="client_tls")
def _client_tls(ca: trustme.CA) -> ssl.SSLContext:
    return trusting(ca)


@pytest.fixture(name="tls_server")
async def _tls_server(tls_files: tuple[Path, Path], sqlite_url: str) -> AsyncIterator[LiveServer]:
    certfile, keyfile = tls_files
    server = LiveServer({"ROYAL_DATABASE_URL": sqlite_url}, certfile=certfile, keyfile=keyfile)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.close)


def established_connections(port: int) -> int | None:
    """TCP connections the server has accepted on ``port`` and still holds (Linux only)."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        return None
    count = 0
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:  # 01: ESTABLISHED
            count += 1
    return count


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def open_streams(server: LiveServer, ca: trustme.CA, token: str) -> int:
    """The server's count of open SSE streams, asked on a connection of its own."""
    async with httpx.AsyncClient(base_url=server.url, verify=trusting(ca), timeout=10) as http:
        response = await http.get("/streams", headers=bearer(token))
    return int(response.json()["counters"]["sse_open"])


async def test_twenty_sse_streams_share_one_http2_connection(
    tls_server: LiveServer,
    client_tls: ssl.SSLContext,
    ca: trustme.CA,
    sqlite_url: str,
    password_hash: str,
) -> None:
    assert tls_server.url.startswith("https://")
    tokens = await seed_users(sqlite_url, password_hash)

    async def all_open(count: int) -> bool:
        return await open_streams(tls_server, ca, tokens["viewer"]) == count

    async with httpx.AsyncClient(
        base_url=tls_server.url,
        http2=True,
        verify=client_tls,
        timeout=httpx.Timeout(10, read=None),
    ) as http:
        streams = [
            SSEClient(f"{tls_server.url}/streams/alerts", token=tokens["viewer"], client=http)
            for _ in range(STREAMS)
        ]
        await asyncio.gather(*(stream.open() for stream in streams))
        responses = [stream.response for stream in streams if stream.response is not None]
        assert [r.status_code for r in responses] == [200] * STREAMS
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert {r.headers["content-type"] for r in responses} == {
            "text/event-stream; charset=utf-8"
        }

        # One TCP connection seen from the client: the same local address for every response,
        # each on its own HTTP/2 stream ...
        local_addresses = {
            r.extensions["network_stream"].get_extra_info("client_addr") for r in responses
        }
        assert len(local_addresses) == 1, local_addresses
        assert len({r.extensions["stream_id"] for r in responses}) == STREAMS
        # ... and from the server: it holds exactly one connection on its port.
        seen = established_connections(tls_server.port)
        assert seen in (None, 1), f"the server holds {seen} connections"
        await eventually(lambda: all_open(STREAMS))

        # Publishing travels on the same connection, beside the 20 open streams.
        published = await http.post(
            "/streams/alerts",
            json={"event": "h2.check", "data": {"n": 1}},
            headers=bearer(tokens["operator"]),
        )
        assert (published.status_code, published.http_version) == (201, "HTTP/2")
        event_id = str(published.json()["id"])

        received = await asyncio.gather(*(stream.read(1, timeout=10) for stream in streams))
        for [event] in received:
            assert (event.id, event.event) == (event_id, "h2.check")
            assert json.loads(event.data) == {"n": 1}
        assert established_connections(tls_server.port) in (None, 1)
        for stream in streams:
            await stream.close()

    # The connection is gone: every stream on it is freed.
    await eventually(lambda: all_open(0))


class RawH2:
    """A bare HTTP/2 client (the h2 state machine on a TLS socket) for what httpx cannot do:
    httpx closes an HTTP/2 response without RST_STREAM (encode/httpcore#943), a browser
    closing an EventSource sends one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.connection = h2.connection.H2Connection(H2Configuration(client_side=True))
        self.connection.initiate_connection()
        self.writer.write(self.connection.data_to_send())
        self.bodies: dict[int, bytes] = {}
        self.statuses: dict[int, bytes] = {}
        self._pump = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, port: int, tls: ssl.SSLContext) -> RawH2:
        tls.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        return cls(reader, writer)

    def get(self, authority: str, path: str, token: str) -> int:
        stream_id = self.connection.get_next_available_stream_id()
        headers = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", authority),
            (":path", path),
            ("authorization", f"Bearer {token}"),
        ]
        self.connection.send_headers(stream_id, headers, end_stream=True)
        self.bodies[stream_id] = b""
        self.writer.write(self.connection.data_to_send())
        return stream_id

    def reset(self, stream_id: int) -> None:
        self.connection.reset_stream(stream_id, ErrorCodes.CANCEL)
        self.writer.write(self.connection.data_to_send())

    async def _read(self) -> None:
        while chunk := await self.reader.read(65536):
            for event in self.connection.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    self.statuses[event.stream_id] = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    self.bodies[event.stream_id] += event.data
                    self.connection.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            self.writer.write(self.connection.data_to_send())

    async def close(self) -> None:
        self._pump.cancel()
        await asyncio.gather(self._pump, return_exceptions=True)
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


async def test_a_reset_stream_is_freed_and_its_neighbours_go_on(
    tls_server: LiveServer, ca: trustme.CA, sqlite_url: str, password_hash: str
) -> None:
    tokens = await seed_users(sqlite_url, password_hash)
    authority = f"127.0.0.1:{tls_server.port}"
    client = await RawH2.connect(tls_server.port, trusting(ca))
    try:
        closing, staying = (
            client.get(authority, "/streams/alerts", tokens["viewer"]) for _ in range(2)
        )

        async def open_count(count: int) -> bool:
            return await open_streams(tls_server, ca, tokens["viewer"]) == count

        await eventually(lambda: open_count(2))
        assert client.statuses == {closing: b"200", staying: b"200"}

        client.reset(closing)  # what a browser does when a page closes an EventSource
        await eventually(lambda: open_count(1))

        async with httpx.AsyncClient(base_url=tls_server.url, verify=trusting(ca)) as http:
            published = await http.post(
                "/streams/alerts",
                json={"event": "h2.check", "data": {"n": 2}},
                headers=bearer(tokens["operator"]),
            )
        assert published.status_code == 201, published.text
        frame = f'id: {published.json()["id"]}\nevent: h2.check\ndata: {{"n":2}}\n\n'

        async def delivered() -> bool:
            return frame.encode() in client.bodies[staying]

        await eventually(delivered)
        assert b"h2.check" not in client.bodies[closing]
    finally:
        await client.close()


async def test_http1_clients_still_get_https(
    tls_server: LiveServer, client_tls: ssl.SSLContext
) -> None:
    """ALPN offers h2 and http/1.1: a client without HTTP/2 is served over HTTP/1.1."""
    async with httpx.AsyncClient(base_url=tls_server.url, verify=client_tls, timeout=10) as http:
        response = await http.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok")
    assert response.http_version == "HTTP/1.1"
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_the_certificate_is_the_one_given(tls_server: LiveServer) -> None:
    """A client that trusts only the system CAs refuses the throwaway certificate: the
    server really serves the files it was given, over TLS."""
    async with httpx.AsyncClient(base_url=tls_server.url, timeout=10) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get("/healthz")


def serve(*args: str, sqlite_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "royal", "serve", "--no-migrate", "--bind", "127.0.0.1:0", *args],
        env={**os.environ, "ROYAL_ENV": "testing", "ROYAL_DATABASE_URL": sqlite_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_wants_both_certfile_and_keyfile(
    tls_files: tuple[Path, Path], sqlite_url: str
) -> None:
    certfile, keyfile = tls_files
    alone = serve("--certfile", str(certfile), sqlite_url=sqlite_url)
    assert alone.returncode == 2 and "--certfile and --keyfile go together" in alone.stderr
    missing = serve(
        "--certfile", str(certfile), "--keyfile", str(keyfile.with_name("nope.pem")),
        sqlite_url=sqlite_url,
    )  # fmt: skip
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in alone.stderr + missing.stderr
