"""Slowloris (200 connections trickling request headers while others are served promptly, and
what Hypercorn does with them: docs/security.md), oversized headers (Hypercorn's 431) and
oversized bodies (Royal's JSON 413, without reading them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from pathlib import Path

import httpx

from royal.testing import SSEClient
from tests.conftest import LiveRoyal
from tests.fanout import cancel
from tests.reliability.raw_clients import (
    REPOSITORY,
    TOPIC,
    StartRoyal,
    assert_quiet_log,
    open_raw,
    read_head,
    read_response,
    read_until_closed,
)

# --- 3. slowloris ----------------------------------------------------------------------------

SLOWLORIS = 200
TRICKLE_SECONDS = 3.0


async def trickle(socks: list[socket.socket], seconds: float, every: float = 1.0) -> int:
    """Send each socket one more byte of a header line every ``every`` seconds (never the
    blank line that would end the headers); how many bytes each one sent."""
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for sock in socks:
            with contextlib.suppress(OSError):  # closed by the server
                sock.send(b"a")
        sent += 1
        await asyncio.sleep(every)
    return sent


def still_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed nor answered ``sock`` (non-blocking peek)."""
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True  # nothing to read: neither an answer nor a close
    except OSError:
        return False
    return False


async def slowloris(live: LiveRoyal, count: int) -> list[socket.socket]:
    head = b"GET /healthz HTTP/1.1\r\nHost: royal\r\nX-Slow: "
    return list(await asyncio.gather(*(open_raw(live, head) for _ in range(count))))


async def test_slowloris_does_not_slow_anyone_else(live_royal: StartRoyal) -> None:
    live = await live_royal()
    slow = await slowloris(live, SLOWLORIS)
    latencies: list[float] = []
    event_latencies: list[float] = []
    try:
        trickling = asyncio.create_task(trickle(slow, TRICKLE_SECONDS))
        async with (
            SSEClient(f"{live.url}/streams/{TOPIC}", token=live.tokens["viewer"]) as stream,
            httpx.AsyncClient(base_url=live.url, timeout=10) as http,
        ):
            while not trickling.done():
                # A new connection each time: accepting is not held up either.
                started = time.monotonic()
                response = await http.get("/healthz", headers={"Connection": "close"})
                latencies.append(time.monotonic() - started)
                assert response.text == "ok"
                started = time.monotonic()
                event_id = await live.publish(TOPIC, {"n": len(latencies)})
                (event,) = await stream.read(1, timeout=5)
                event_latencies.append(time.monotonic() - started)
                assert int(event.id or 0) == event_id
                await asyncio.sleep(0.1)
        trickled = await trickling
        open_after = sum(still_open(sock) for sock in slow)
    finally:
        for sock in slow:
            sock.close()
    print(
        f"\n{SLOWLORIS} slowloris connections, {trickled} bytes each: GET /healthz max "
        f"{max(latencies) * 1000:.0f} ms over {len(latencies)}, publish to SSE max "
        f"{max(event_latencies) * 1000:.0f} ms; {open_after} still held open by Hypercorn"
    )
    assert max(latencies) < 1.0
    assert max(event_latencies) < 1.0
    # Hypercorn holds a request whose headers never end until keep_alive_timeout (75 s in
    # hypercorn.toml): the next test shows that bound.
    assert open_after == SLOWLORIS
    assert_quiet_log(live)


async def test_hypercorn_closes_unfinished_headers_at_keep_alive_timeout(
    live_royal: StartRoyal, tmp_path: Path
) -> None:
    """Hypercorn has no header timeout of its own, but its keep-alive timer runs from the
    moment a connection opens until a request's headers are complete, and trickling bytes do
    not restart it: keep_alive_timeout bounds how long a slowloris connection lives."""
    keep_alive = 2.0
    (tmp_path / "hypercorn.toml").write_text(f"keep_alive_timeout = {keep_alive}\n")
    live = await live_royal(cwd=tmp_path, env={"PYTHONPATH": str(REPOSITORY)})
    opened = time.monotonic()
    slow = await slowloris(live, 20)

    async def closed(sock: socket.socket) -> tuple[bytes, float]:
        answer = await read_until_closed(sock, 3 * keep_alive)
        return answer, time.monotonic() - opened

    trickling = asyncio.create_task(trickle(slow, 3 * keep_alive, every=0.2))
    try:
        answers, lifetimes = zip(*await asyncio.gather(*map(closed, slow)), strict=True)
    finally:
        await cancel(trickling)
        for sock in slow:
            sock.close()
    print(
        f"\n20 slowloris connections closed {min(lifetimes):.2f}-{max(lifetimes):.2f} s after "
        f"they opened, with {set(answers)}"
    )
    assert keep_alive <= min(lifetimes) and max(lifetimes) < keep_alive + 1.0
    assert set(answers) == {b""}  # closed without an answer


# --- 4. oversized headers and bodies ---------------------------------------------------------

MAX_INCOMPLETE = 16384  # hypercorn.toml: h11_max_incomplete_size
MAX_RECV = 65536  # what Hypercorn reads from a socket at a time


async def test_oversized_headers_get_431_and_nobody_else_notices(live_royal: StartRoyal) -> None:
    """h11 checks the size of a request whose headers are still incomplete after a read: more
    than h11_max_incomplete_size (16 KiB) then gets Hypercorn's bare 431 and a close. A header
    block that arrives complete in one read of 64 KiB is not checked (docs/security.md), so
    only one beyond 16 + 64 KiB is refused however it arrives."""
    live = await live_royal()
    head = b"GET /healthz HTTP/1.1\r\nHost: royal\r\n"
    cases = {
        "unfinished, over 16 KiB": head + b"X-Big: " + b"a" * (MAX_INCOMPLETE + 1000),
        "complete, over 16 + 64 KiB": head
        + b"X-Big: "
        + b"a" * (MAX_INCOMPLETE + MAX_RECV + 1000)
        + b"\r\n\r\n",
    }
    async with SSEClient(f"{live.url}/streams/{TOPIC}", token=live.tokens["viewer"]) as stream:
        for name, request in cases.items():
            # Ten at once, next to an open stream.
            socks = await asyncio.gather(*(open_raw(live, request) for _ in range(10)))
            try:
                answers = await asyncio.gather(*(read_until_closed(sock) for sock in socks))
            finally:
                for sock in socks:
                    sock.close()
            for answer in answers:
                head_lines = answer.split(b"\r\n")
                assert head_lines[0] == b"HTTP/1.1 431 ", (name, answer[:200])
                assert b"connection: close" in head_lines, (name, answer[:200])
        # Just under the limit is served, and the stream never noticed.
        sock = await open_raw(live, head + b"X-Big: " + b"a" * 15000 + b"\r\n\r\n")
        try:
            assert (await read_head(sock))[0] == 200
        finally:
            sock.close()
        event_id = await live.publish(TOPIC, {"after": "oversized headers"})
        (event,) = await stream.read(1, timeout=5)
    assert int(event.id or 0) == event_id
    assert_quiet_log(live)


async def upload(sock: socket.socket, size: int, *, chunked: bool) -> int:
    """Send ``size`` bytes of body until done or the server closes; the bytes it took."""
    loop = asyncio.get_running_loop()
    piece = b"a" * 65536
    sent = 0
    with contextlib.suppress(OSError):  # the server closed: EPIPE or a reset
        while sent < size:
            await loop.sock_sendall(sock, b"10000\r\n" + piece + b"\r\n" if chunked else piece)
            sent += len(piece)
    return sent


async def test_an_oversized_body_gets_a_json_413_without_being_read(
    live_royal: StartRoyal,
) -> None:
    """ROYAL_MAX_CONTENT_LENGTH (1 MiB): a 50 MiB upload, announced or chunked, is answered with
    Royal's JSON 413 at once, and the server stops reading long before the end. (A client
    that reads only after sending everything, like httpx, sees the connection close instead,
    unless the body fits in the socket buffers: the 2 MiB case.)"""
    live = await live_royal()
    size = 50 * 1024 * 1024
    token = live.tokens["operator"]
    expected = {"error": "Request Entity Too Large", "status_code": 413}
    for chunked in (False, True):
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
        request = (
            f"POST /api/alerts/ HTTP/1.1\r\nHost: royal\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n"
        ).encode()
        sock = await open_raw(live, request)
        try:
            uploading = asyncio.create_task(upload(sock, size, chunked=chunked))
            status, head, body = await read_response(sock)
            sent = await asyncio.wait_for(uploading, 10)
        finally:
            sock.close()
        assert status == 413, (head, body)
        assert "content-type: application/json" in head.split("\r\n")
        assert json.loads(body) == expected
        assert sent < size / 2, f"the server read {sent} bytes of a refused body"

    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        response = await http.post(
            "/api/alerts/",
            content=b'{"message": "' + b"a" * (2 * 1024 * 1024) + b'"}',
            headers={**live.headers(), "Content-Type": "application/json"},
        )
        assert response.status_code == 413 and response.json() == expected
        assert (await http.get("/api/alerts/", headers=live.headers())).status_code == 200
    assert_quiet_log(live)
