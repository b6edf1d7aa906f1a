"""A WebSocket flood storm, run in a process of its own by test_hostile_clients.py, as if from
other machines (so the test's latencies are the server's, not a busy client loop's):

    python -m tests.reliability.ws_flood WS_URL TOKEN SECONDS

``sockets`` connections flood /ws at once with pings, far over the server's rate; each one that
is closed connects and floods again until SECONDS have passed. It prints ``started`` when the
first floods go out, then the close codes they all got, as a JSON list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


async def flood(connection: ClientConnection, messages: int) -> int | None:
    """Subscribe, then send pings as fast as possible without waiting for the answers; the
    close code."""
    with contextlib.suppress(ConnectionClosed):
        await connection.send(json.dumps({"type": "subscribe", "topics": ["alerts"]}))
        for n in range(messages):
            await connection.send(json.dumps({"type": "ping", "data": n}))
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await connection.recv()
    return connection.close_code


async def flood_storm(
    ws_url: str, token: str, seconds: float, *, sockets: int = 50, messages: int = 50
) -> list[int | None]:
    """``sockets`` flooders, each flooding again once closed, for ``seconds``: the close codes."""
    codes: list[int | None] = []
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}

    async def flooder() -> None:
        while time.monotonic() < deadline:
            connection = await connect(
                ws_url, additional_headers=headers, open_timeout=10, max_queue=None
            )
            try:
                codes.append(await flood(connection, messages))
            finally:
                connection.transport.abort()

    print("started", flush=True)
    await asyncio.gather(*(flooder() for _ in range(sockets)))
    return codes


def main(argv: list[str]) -> None:
    ws_url, token, seconds = argv
    print(json.dumps(asyncio.run(flood_storm(ws_url, token, float(seconds)))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
