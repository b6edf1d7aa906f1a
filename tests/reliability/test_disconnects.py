"""Clients that leave badly: disconnect storms (100 SSE streams and 20 WebSockets dropped at
once, with a FIN or an RST, all freed within a second) and vanished clients (no FIN, no RST:
the client runs in a network namespace behind a veth pair that is then switched off; freed
within two heartbeats through ``TCP_USER_TIMEOUT``, royal/server.py, where the kernel would
retransmit into the void for ~15 minutes). The vanish tests need root and iproute2. The same
timeout drops a client that stops reading altogether.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.conftest import IN_CI
from tests.reliability.raw_clients import (
    TOPIC,
    Ending,
    StartRoyal,
    assert_quiet_log,
    assert_still_serving,
    baseline,
    drop,
    next_event,
    next_heartbeat,
    open_raw,
    open_ws,
    read_head,
    read_until,
    released,
    sse_request,
    stats_client,
    wait_held,
)

# --- 1. disconnect storms --------------------------------------------------------------------

STORM_SSE = 100
STORM_WS = 20


@pytest.mark.parametrize("ending", ["fin", "rst"])
async def test_a_disconnect_storm_frees_every_stream_within_a_second(
    live_royal: StartRoyal, ending: Ending
) -> None:
    live = await live_royal()
    async with stats_client(live) as http:
        start = await baseline(http)
        streams = await asyncio.gather(
            *(open_raw(live, sse_request(live)) for _ in range(STORM_SSE))
        )
        connections: list[ClientConnection] = []
        try:
            assert {(await read_head(sock))[0] for sock in streams} == {200}
            connections.extend(await asyncio.gather(*(open_ws(live) for _ in range(STORM_WS))))
            opened, _ = await wait_held(
                http,
                lambda h: (
                    (h.sse_open, h.ws_open) == (STORM_SSE, STORM_WS)
                    and h.subscriptions == start.subscriptions + STORM_SSE + STORM_WS
                ),
                timeout=5,
            )
            assert opened.sockets >= start.sockets + STORM_SSE + STORM_WS
            # All at once: no await between the first and the last.
            for sock in streams:
                drop(sock, ending)
                sock.close()
            for connection in connections:
                drop(connection.transport.get_extra_info("socket"), ending)
                connection.transport.abort()
            _, elapsed = await wait_held(http, released(start), timeout=5)
        finally:
            for sock in streams:
                sock.close()
            for connection in connections:
                connection.transport.abort()
    print(f"\n{STORM_SSE} SSE + {STORM_WS} WS dropped with {ending}: freed in {elapsed:.3f} s")
    assert elapsed < 1.0
    await assert_still_serving(live)
    assert_quiet_log(live)


# --- 2. vanished clients ---------------------------------------------------------------------

HEARTBEAT_SECONDS = 1.0
SLACK_SECONDS = 0.75  # timers, polling GET /streams, two busy cores
CLONE_NEWNET = 0x40000000


@dataclass
class Namespace:
    """A network namespace (the client's "machine") joined to this one by a veth pair."""

    name: str
    server_address: str  # this side of the veth
    client_address: str
    client_link: str

    def socket(self) -> socket.socket:
        """A TCP socket inside the namespace. A socket keeps the namespace it was created in,
        so a short-lived thread enters the namespace (setns is per thread), creates it, ends."""
        made: list[socket.socket | BaseException] = []

        def create() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                with open(f"/run/netns/{self.name}", "rb") as handle:
                    if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            except BaseException as error:  # re-raised in the caller's thread
                made.append(error)

        thread = threading.Thread(target=create)
        thread.start()
        thread.join()
        (result,) = made
        if isinstance(result, BaseException):
            raise result
        result.bind((self.client_address, 0))
        return result

    def vanish(self) -> None:
        """The client's machine goes away: its interface goes down, so nothing it sends leaves
        (no FIN, no RST) and everything sent to it is dropped on the way, unanswered."""
        ip("-n", self.name, "link", "set", "dev", self.client_link, "down")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture(name="namespace")
def _namespace() -> Iterator[Namespace]:
    """A throwaway network namespace for the client; skipped without root and iproute2."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("a network namespace needs root and iproute2 (ip)")
    tag = os.getpid() % 100_000
    name, server_link, client_link = f"royal-{tag}", f"rs{tag}", f"rc{tag}"
    # A /30 in 198.18.0.0/15, the range set aside for network tests (RFC 2544).
    block = tag % (256 * 64)
    prefix, first = f"198.18.{block // 64}", block % 64 * 4
    server_address, client_address = f"{prefix}.{first + 1}", f"{prefix}.{first + 2}"
    try:
        ip("netns", "add", name)
    except subprocess.CalledProcessError as error:
        message = f"cannot create a network namespace: {error.stderr.decode().strip()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        ip("link", "add", server_link, "type", "veth", "peer", "name", client_link)
        ip("link", "set", client_link, "netns", name)
        ip("addr", "add", f"{server_address}/30", "dev", server_link)
        ip("link", "set", server_link, "up")
        ip("-n", name, "addr", "add", f"{client_address}/30", "dev", client_link)
        ip("-n", name, "link", "set", client_link, "up")
        yield Namespace(name, server_address, client_address, client_link)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("link", "del", server_link)  # takes its peer along
        ip("netns", "del", name)


async def test_a_vanished_client_is_freed_within_two_heartbeats(
    live_royal: StartRoyal, namespace: Namespace
) -> None:
    live = await live_royal(
        host=namespace.server_address,
        env={"ROYAL_STREAM_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS)},
    )
    streams: list[socket.socket] = []
    connections: list[ClientConnection] = []
    async with stats_client(live) as http:
        start = await baseline(http)
        try:
            for _ in range(5):
                streams.append(await open_raw(live, sse_request(live), namespace.socket()))
                assert (await read_head(streams[-1]))[0] == 200
            for _ in range(3):
                sock = await open_raw(live, sock=namespace.socket())
                connections.append(await open_ws(live, sock=sock))
            await wait_held(http, lambda h: (h.sse_open, h.ws_open) == (5, 3), timeout=5)
            # The path works both ways: an event reaches every socket in the namespace.
            event_id = await live.publish(TOPIC, {"before": "vanishing"})
            for connection in connections:
                assert (await next_event(connection))["id"] == event_id
            for sock in streams:
                await read_until(sock, f"id: {event_id}\n".encode())
            # Then each goes idle: it carries a heartbeat every HEARTBEAT_SECONDS from now on.
            await asyncio.gather(
                *(read_until(sock, b": ping\n", timeout=3 * HEARTBEAT_SECONDS) for sock in streams),
                *(next_heartbeat(connection) for connection in connections),
            )

            namespace.vanish()
            _, elapsed = await wait_held(
                http, released(start), timeout=2 * HEARTBEAT_SECONDS + SLACK_SECONDS
            )
        finally:
            for sock in streams:
                sock.close()
            for connection in connections:
                connection.transport.abort()
    print(f"\n5 SSE + 3 WS clients vanished: freed after {elapsed:.2f} s")
    await assert_still_serving(live)
    assert_quiet_log(live)


async def test_a_client_that_stops_reading_is_dropped_like_a_vanished_one(
    live_royal: StartRoyal,
) -> None:
    """The same TCP_USER_TIMEOUT ends a connection whose receive window stays shut (the peer
    acknowledges zero-window probes, but takes nothing) for a heartbeat: a client that stops
    reading altogether is dropped, and would resume with Last-Event-ID."""
    live = await live_royal(env={"ROYAL_STREAM_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS)})
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few events
    async with stats_client(live) as http:
        start = await baseline(http)
        stalled = await open_raw(live, sse_request(live), stalled)
        try:
            assert (await read_head(stalled))[0] == 200
            await wait_held(http, lambda h: h.sse_open == 1, timeout=5)
            async with httpx.AsyncClient(
                base_url=live.url, headers=live.headers(), timeout=10
            ) as publisher:
                for n in range(40):  # 80 KB: far more than its 4 KB window takes
                    event = {"event": "big", "data": {"n": n, "pad": "x" * 2000}}
                    response = await publisher.post(f"/streams/{TOPIC}", json=event)
                    assert response.status_code == 201, response.text
            _, elapsed = await wait_held(
                http, released(start), timeout=2 * HEARTBEAT_SECONDS + SLACK_SECONDS
            )
        finally:
            stalled.close()
    print(f"\na client that stopped reading was dropped {elapsed:.2f} s after the last event")
    assert_quiet_log(live)
