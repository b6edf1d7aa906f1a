"""/ws over a real Hypercorn: envelopes, resume, errors, limits, auth and revocation."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from royal.db import connect_database
from royal.services import accounts, users
from royal.testing import SSEClient, WSClient
from tests.conftest import LiveRoyal

LiveRoyalFactory = Callable[..., Awaitable[LiveRoyal]]


async def wait_counter(
    live: LiveRoyal, name: str, test: Callable[[int], bool], timeout: float
) -> dict[str, int]:
    """Poll GET /streams until ``test(counters[name])``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        counters: dict[str, int] = (await live.stats())["counters"]
        if test(counters[name]):
            return counters
        if time.monotonic() > deadline:
            pytest.fail(f"{name} still {counters[name]} after {timeout} s: {counters}")
        await asyncio.sleep(0.02)


async def own_subscriptions(live: LiveRoyal) -> int:
    """The subscriptions the server holds for itself (the job runner's) with no stream open:
    sockets' subscriptions are counted on top of these. Read once the number is steady."""
    readings: list[int] = []
    deadline = time.monotonic() + 5
    while len(readings) < 3 or len(set(readings[-3:])) > 1:
        assert time.monotonic() < deadline, readings
        counters = (await live.stats())["counters"]
        assert counters["ws_open"] == counters["sse_open"] == 0
        readings.append(counters["subscriptions"])
        await asyncio.sleep(0.1)
    return readings[-1]


async def close_code(connection: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read (and drop) messages until the server closes; the close code it sent."""

    async def drain() -> None:
        try:
            while True:
                await connection.recv()
        except ConnectionClosed:
            return

    await asyncio.wait_for(drain(), timeout)
    return connection.close_code


@asynccontextmanager
async def ws(
    live: LiveRoyal,
    role: str | None = "viewer",
    *,
    url: str | None = None,
    origin: str | None = None,
) -> AsyncIterator[WSClient]:
    """A WSClient on ``/ws`` as ``role`` (None: no credentials), with an optional Origin.

    Like WSClient it never stops reading (``max_queue=None``), so a close is never stuck
    behind unread events; its close timeout is short so a broken close fails fast.
    """
    client = WSClient(url or live.ws_url, token=None if role is None else live.tokens[role])
    client.connection = await connect(
        client.url,
        additional_headers={} if role is None else live.headers(role),
        origin=origin,  # type: ignore[arg-type]
        max_size=None,
        max_queue=None,
        open_timeout=5,
        close_timeout=2,
    )
    try:
        yield client
    finally:
        await client.connection.close()


async def test_events_match_the_sse_frames_and_the_ack_comes_first(
    live_royal: LiveRoyalFactory,
) -> None:
    live = await live_royal()
    url = f"{live.url}/streams/alerts"
    async with SSEClient(url, token=live.tokens["viewer"]) as stream, ws(live) as client:
        assert await client.subscribe(["alerts"]) == {"type": "subscribed", "topics": ["alerts"]}
        # The SSE stream subscribes before sse_open can be read (no await in between).
        await wait_counter(live, "sse_open", lambda n: n == 1, timeout=5)
        payloads: list[Any] = [
            {"level": "high", "text": "café ✓ 🎉", "nested": {"list": [1, 2.5, None, True]}},
            "a plain string\nwith a line break",
            [1, 2, 3],
            42,
        ]
        ids = [await live.publish("alerts", data, event="alert.raised") for data in payloads]

        frames = await stream.read(len(payloads), timeout=5)
        assert client.connection is not None
        raw = [await asyncio.wait_for(client.connection.recv(), 5) for _ in payloads]
    for frame, text, event_id, data in zip(frames, raw, ids, payloads, strict=True):
        envelope = json.loads(text)
        assert envelope == {
            "type": "event",
            "topic": "alerts",
            "event": "alert.raised",
            "id": event_id,
            "data": data,
        }
        assert frame.id == str(envelope["id"])
        assert frame.event == envelope["event"]
        assert json.loads(frame.data) == envelope["data"]
        # One serialisation: the WebSocket envelope embeds the very JSON text of the SSE data.
        assert isinstance(text, str) and text.endswith(f',"data":{frame.data}}}')


async def test_the_ack_comes_before_replayed_and_live_events(live_royal: LiveRoyalFactory) -> None:
    live = await live_royal()
    first = await live.publish("alerts", {"n": 0})
    for n in range(1, 20):
        await live.publish("alerts", {"n": n})
    stop = asyncio.Event()

    async def keep_publishing() -> None:
        n = 100
        while not stop.is_set():
            await live.publish("alerts", {"n": n})
            n += 1

    publisher = asyncio.create_task(keep_publishing())
    try:
        for last_event_id in (first, None, 0, None):
            async with ws(live) as client:
                await client.send(
                    {"type": "subscribe", "topics": ["alerts"], "last_event_id": last_event_id}
                )
                assert await client.receive(5) == {"type": "subscribed", "topics": ["alerts"]}
                assert (await client.receive(5))["type"] == "event"
    finally:
        stop.set()
        await asyncio.wait_for(publisher, 10)


async def test_resume_replays_exactly_the_later_events_then_live_ones(
    live_royal: LiveRoyalFactory,
) -> None:
    live = await live_royal()
    ids = [await live.publish("alerts", {"n": n}) for n in range(10)]
    async with ws(live) as client:
        ack = await client.subscribe(["alerts"], last_event_id=ids[4])
        assert ack == {"type": "subscribed", "topics": ["alerts"]}
        replayed = await client.events(5, timeout=5)
        assert [e["id"] for e in replayed] == ids[5:]
        assert [e["data"] for e in replayed] == [{"n": n} for n in range(5, 10)]
        live_ids = [await live.publish("alerts", {"n": n}) for n in range(10, 15)]
        live_events = await client.events(5, timeout=5)
        assert [e["id"] for e in live_events] == live_ids
        await client.send({"type": "ping", "data": "end"})
        assert await client.receive(5) == {"type": "pong", "data": "end"}  # nothing else came


async def test_no_event_lost_or_duplicated_across_reconnects(live_royal: LiveRoyalFactory) -> None:
    live = await live_royal()
    total = 300
    published: list[int] = []

    async def publish_all() -> None:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            for n in range(total):
                response = await http.post(
                    "/streams/alerts", json={"data": {"n": n}}, headers=live.headers()
                )
                assert response.status_code == 201, response.text
                published.append(response.json()["id"])
                if n % 10 == 0:
                    await asyncio.sleep(0.01)  # spread the events over the reconnects

    received: list[dict[str, Any]] = []
    last_event_id = 0
    reconnects = 0
    publisher = asyncio.create_task(publish_all())
    try:
        while len(received) < total:
            async with ws(live) as client:
                assert (await client.subscribe(["alerts"], last_event_id))["type"] == "subscribed"
                # Take a slice of the stream, then leave without unsubscribing: every other
                # time with a closing handshake, otherwise by dropping the TCP connection.
                batch = await client.events(min(40, total - len(received)), timeout=10)
                if reconnects % 2:
                    assert client.connection is not None
                    client.connection.transport.abort()
            received.extend(batch)
            last_event_id = batch[-1]["id"]
            reconnects += 1
        await asyncio.wait_for(publisher, 20)
    finally:
        publisher.cancel()
    assert reconnects >= 7
    assert [e["id"] for e in received] == published
    assert [e["data"]["n"] for e in received] == list(range(total))


async def test_protocol_errors_keep_the_connection_usable(live_royal: LiveRoyalFactory) -> None:
    live = await live_royal(env={"ROYAL_WS_MAX_SUBSCRIPTIONS": "2"})
    own = await own_subscriptions(live)
    async with ws(live) as client:
        assert client.connection is not None

        async def error_for(message: str | bytes | dict[str, Any]) -> str:
            if isinstance(message, str | bytes):
                await client.connection.send(message)  # type: ignore[union-attr]
            else:
                await client.send(message)
            reply = await client.receive(5)
            assert reply["type"] == "error" and reply["message"], reply
            return str(reply["code"])

        await client.send({"type": "ping", "data": {"echo": [1, "two"]}})
        assert await client.receive(5) == {"type": "pong", "data": {"echo": [1, "two"]}}
        await client.send({"type": "ping"})
        assert await client.receive(5) == {"type": "pong", "data": None}

        assert await error_for("{not json") == "bad_json"
        assert await error_for(b"\xff\xfe binary garbage") == "bad_json"
        assert await error_for({"type": "nope"}) == "unknown_type"
        assert await error_for("[1, 2]") == "unknown_type"
        assert await error_for({"topics": ["alerts"]}) == "unknown_type"
        assert await error_for({"type": "subscribe"}) == "bad_message"
        assert await error_for({"type": "subscribe", "topics": "alerts"}) == "bad_message"
        assert await error_for({"type": "subscribe", "topics": []}) == "bad_message"
        assert await error_for({"type": "subscribe", "topics": [1]}) == "bad_message"
        assert (
            await error_for({"type": "subscribe", "topics": ["alerts"], "last_event_id": -1})
            == "bad_message"
        )
        assert await error_for({"type": "unsubscribe"}) == "bad_message"
        assert await error_for({"type": "subscribe", "topics": ["nope"]}) == "unknown_topic"
        assert await error_for({"type": "subscribe", "topics": ["Bad Topic!"]}) == "unknown_topic"
        assert await error_for({"type": "unsubscribe", "topics": ["alerts"]}) == "not_subscribed"

        assert await client.subscribe(["alerts"]) == {"type": "subscribed", "topics": ["alerts"]}
        assert await error_for({"type": "subscribe", "topics": ["alerts"]}) == "already_subscribed"
        assert (
            await error_for({"type": "subscribe", "topics": ["events", "alerts"]})
            == "already_subscribed"
        )
        assert (
            await error_for({"type": "subscribe", "topics": ["events", "system"]})
            == "too_many_subscriptions"
        )
        assert await client.subscribe(["events"]) == {"type": "subscribed", "topics": ["events"]}
        assert (
            await error_for({"type": "subscribe", "topics": ["system"]}) == "too_many_subscriptions"
        )

        # Still usable after all that: events flow on both subscriptions.
        alert = await live.publish("alerts", {"n": 1})
        event = await live.publish("events", {"n": 2})
        got = await client.events(2, timeout=5)
        assert sorted((e["topic"], e["id"]) for e in got) == [("alerts", alert), ("events", event)]

        # Unsubscribe: acknowledged, and nothing more arrives on that topic.
        await client.send({"type": "unsubscribe", "topics": ["alerts"]})
        assert await client.receive(5) == {"type": "unsubscribed", "topics": ["alerts"]}
        assert await error_for({"type": "unsubscribe", "topics": ["alerts"]}) == "not_subscribed"
        await live.publish("alerts", {"n": 3})
        later = await live.publish("events", {"n": 4})
        await live.publish("alerts", {"n": 5})
        await client.send({"type": "ping", "data": "fence"})
        seen = [await client.receive(5), await client.receive(5)]
        assert {"type": "pong", "data": "fence"} in seen
        assert [m["id"] for m in seen if m["type"] == "event"] == [later]
        await client.send({"type": "ping", "data": "last"})
        assert await client.receive(5) == {"type": "pong", "data": "last"}  # no alerts event
        # Room for a new subscription again after the unsubscribe.
        assert await client.subscribe(["system"]) == {"type": "subscribed", "topics": ["system"]}
        counters = await wait_counter(live, "subscriptions", lambda n: n == own + 2, timeout=1)
        assert counters["ws_open"] == 1
        await client.send({"type": "unsubscribe", "topics": ["events", "system"]})
        assert await client.receive(5) == {"type": "unsubscribed", "topics": ["events", "system"]}
        await wait_counter(live, "subscriptions", lambda n: n == own, timeout=1)


async def test_a_flood_closes_with_1008(live_royal: LiveRoyalFactory) -> None:
    live = await live_royal(env={"ROYAL_WS_MAX_MESSAGES_PER_SECOND": "10"})
    async with ws(live) as client:
        assert client.connection is not None
        # A burst of 12 at once: 2 more than the allowance of 10 (see the test below for 100).
        for n in range(12):
            await client.connection.send(json.dumps({"type": "ping", "data": n}))
        pongs = []
        with pytest.raises(ConnectionClosed):
            while True:
                pongs.append((await client.receive(5))["data"])
        assert pongs == list(range(len(pongs))) and 10 <= len(pongs) < 12
        assert client.connection.close_code == 1008
        assert client.connection.close_reason == "too many messages"
    await wait_counter(live, "ws_open", lambda n: n == 0, timeout=1)


async def test_a_long_flood_always_gets_a_clean_1008_close(
    live_royal: LiveRoyalFactory,
) -> None:
    live = await live_royal(env={"ROYAL_WS_MAX_MESSAGES_PER_SECOND": "10"})
    for _ in range(3):
        async with ws(live) as client:
            assert client.connection is not None
            try:
                # Closing under a flood still in flight: with 100 the old race showed in 1 of
                # ~6 tries, with 1000 nearly always.
                for n in range(1000):
                    await client.connection.send(json.dumps({"type": "ping", "data": n}))
            except ConnectionClosed:
                pass
            try:
                outcome = await close_code(client.connection, timeout=2)
            except TimeoutError:
                outcome = "the close frame came, but the server never closed the TCP connection"
            assert outcome == 1008


async def test_a_steady_client_under_the_rate_is_not_closed(live_royal: LiveRoyalFactory) -> None:
    live = await live_royal(env={"ROYAL_WS_MAX_MESSAGES_PER_SECOND": "10"})
    async with ws(live) as client:
        for n in range(12):  # 1.2 s at 10 per second: never over the allowance
            await client.send({"type": "ping", "data": n})
            assert await client.receive(5) == {"type": "pong", "data": n}
            await asyncio.sleep(0.1)


async def test_an_oversized_message_closes_with_1009(live_royal: LiveRoyalFactory) -> None:
    live = await live_royal(env={"ROYAL_WS_MAX_MESSAGE_BYTES": "1024"})
    async with ws(live) as client:
        assert client.connection is not None
        fits = json.dumps({"type": "ping", "data": "x" * 900})
        assert len(fits) <= 1024
        await client.connection.send(fits)
        assert (await client.receive(5))["type"] == "pong"
        message = json.dumps({"type": "ping", "data": "x" * 2000})[:2000]
        assert len(message.encode()) == 2000
        await client.connection.send(message)
        assert await close_code(client.connection) == 1009


async def handshake_status(url: str, **options: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=5, **options):
            pass
    return refused.value.response.status_code


async def test_the_handshake_needs_credentials(live_royal: LiveRoyalFactory) -> None:
    live = await live_royal()
    assert await handshake_status(live.ws_url) == 401
    assert (
        await handshake_status(live.ws_url, additional_headers={"Authorization": "Bearer x"}) == 401
    )
    assert await handshake_status(f"{live.ws_url}?ticket=not-a-ticket") == 401


async def test_a_ticket_opens_one_socket_once(live_royal: LiveRoyalFactory) -> None:
    live = await live_royal()
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        response = await http.post("/auth/ticket", headers=live.headers("viewer"))
    assert response.status_code == 200, response.text
    ticket = response.json()["ticket"]
    async with ws(live, None, url=f"{live.ws_url}?ticket={ticket}") as client:
        assert await client.subscribe(["alerts"]) == {"type": "subscribed", "topics": ["alerts"]}
        event_id = await live.publish("alerts", {"via": "ticket"})
        assert [e["id"] for e in await client.events(1, timeout=5)] == [event_id]
    assert await handshake_status(f"{live.ws_url}?ticket={ticket}") == 401


async def test_the_origin_check(live_royal: LiveRoyalFactory) -> None:
    live = await live_royal()
    auth = {"additional_headers": live.headers("viewer")}
    assert await handshake_status(live.ws_url, origin="https://evil.example", **auth) == 403
    assert await handshake_status(live.ws_url, origin="null", **auth) == 403
    for origin in (None, live.url):  # no Origin: not a browser; Royal's own page: allowed
        async with ws(live, origin=origin) as client:
            await client.send({"type": "ping", "data": origin})
            assert await client.receive(5) == {"type": "pong", "data": origin}


async def test_logout_closes_the_socket_at_once(live_royal: LiveRoyalFactory) -> None:
    live = await live_royal()
    async with ws(live, "other") as client:
        assert (await client.subscribe(["alerts"]))["type"] == "subscribed"
        assert client.connection is not None
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            response = await http.post("/auth/logout", headers=live.headers("other"))
        assert response.status_code == 200, response.text
        started = time.monotonic()
        assert await close_code(client.connection, timeout=5) == 1008
        elapsed = time.monotonic() - started
    assert elapsed < 1.0, elapsed  # the logout fired the watcher in this process
    assert await handshake_status(live.ws_url, additional_headers=live.headers("other")) == 401


async def test_disabling_the_user_closes_the_socket_within_5_seconds(
    live_royal: LiveRoyalFactory,
) -> None:
    live = await live_royal()
    async with ws(live, "other") as client, ws(live, "viewer") as bystander:
        assert (await client.subscribe(["alerts"]))["type"] == "subscribed"
        assert (await bystander.subscribe(["alerts"]))["type"] == "subscribed"
        assert client.connection is not None
        database = connect_database(live.database_url)
        async with database:
            user = await users.select_user_by_name(database, "other")
            assert user is not None
            await accounts.disable_account(database, user.id)
        started = time.monotonic()
        assert await close_code(client.connection, timeout=5) == 1008
        elapsed = time.monotonic() - started
        # Only that user's socket: the other one still works.
        await bystander.send({"type": "ping", "data": "still here"})
        assert await bystander.receive(5) == {"type": "pong", "data": "still here"}
    assert elapsed < 5.0, elapsed


async def test_a_closed_socket_frees_its_subscriptions_within_1_second(
    live_royal: LiveRoyalFactory,
) -> None:
    live = await live_royal()
    own = await own_subscriptions(live)
    async with ws(live) as first, ws(live) as second:
        assert (await first.subscribe(["alerts"]))["type"] == "subscribed"
        assert (await first.subscribe(["events", "jobs"]))["type"] == "subscribed"
        assert (await second.subscribe(["alerts"], last_event_id=0))["type"] == "subscribed"
        counters = (await live.stats())["counters"]
        assert (counters["ws_open"], counters["subscriptions"]) == (2, own + 3)
        assert first.connection is not None
        await first.connection.close()
        counters = await wait_counter(live, "subscriptions", lambda n: n == own + 1, timeout=1)
        assert counters["ws_open"] == 1
        assert second.connection is not None
        await second.connection.close()
        counters = await wait_counter(live, "subscriptions", lambda n: n == own, timeout=1)
        assert counters["ws_open"] == 0


async def test_an_abruptly_dropped_socket_is_freed_within_1_second(
    live_royal: LiveRoyalFactory,
) -> None:
    live = await live_royal()
    own = await own_subscriptions(live)
    async with ws(live) as client:
        assert (await client.subscribe(["alerts", "events"]))["type"] == "subscribed"
        counters = (await live.stats())["counters"]
        assert (counters["ws_open"], counters["subscriptions"]) == (1, own + 1)
        assert client.connection is not None
        client.connection.transport.abort()  # no close frame, just a reset
        counters = await wait_counter(live, "subscriptions", lambda n: n == own, timeout=1)
        assert counters["ws_open"] == 0


def _slow_socket(url: str) -> socket.socket:
    """A connected socket with a tiny receive buffer, so the server feels a slow reader."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return sock


async def test_an_ephemeral_topic_gives_a_slow_reader_the_newest_value(
    live_royal: LiveRoyalFactory,
) -> None:
    # Its own ephemeral topic, like `metrics` (where Royal's live snapshots would interleave).
    live = await live_royal(
        env={
            "ROYAL_STREAM_TOPICS": '["alerts", "events", "jobs", "metrics", "system", "gauges"]',
            "ROYAL_STREAM_EPHEMERAL_TOPICS": '["metrics", "gauges"]',
        }
    )
    count = 50
    padding = secrets.token_hex(100_000)  # 200 kB that compression cannot shrink
    async with connect(
        live.ws_url,
        additional_headers=live.headers("viewer"),
        sock=_slow_socket(live.url),
        compression=None,
        max_queue=1,
        max_size=None,
    ) as slow:
        await slow.send(json.dumps({"type": "subscribe", "topics": ["gauges"]}))
        assert json.loads(await asyncio.wait_for(slow.recv(), 5))["type"] == "subscribed"

        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            for n in range(count):
                response = await http.post(
                    "/streams/gauges",
                    json={"event": "cpu", "data": {"n": n, "padding": padding}},
                    headers=live.headers("operator"),
                )
                assert response.status_code == 201, response.text
                assert response.json() == {"id": None, "topic": "gauges", "event": "cpu"}

        received: list[int] = []
        deadline = time.monotonic() + 10
        while not received or received[-1] != count - 1:
            assert time.monotonic() < deadline, received
            message = json.loads(await asyncio.wait_for(slow.recv(), 5))
            assert message["type"] == "event"
            assert (message["topic"], message["event"], message["id"]) == ("gauges", "cpu", None)
            received.append(message["data"]["n"])
            await asyncio.sleep(0.05)  # a slow reader
    assert received == sorted(set(received))  # in order, never repeated
    assert received[-1] == count - 1  # the newest value always arrives
    assert len(received) < count // 2, received  # far fewer than were published
    print(f"\ngauges: {count} published, the slow reader got {len(received)}: {received}")

    # Nothing was stored: a late subscriber gets the latest value at once, and only that.
    async with ws(live) as late:
        assert (await late.subscribe(["gauges"]))["type"] == "subscribed"
        (latest,) = await late.events(1, timeout=1)
        assert latest["data"]["n"] == count - 1 and latest["id"] is None
        await late.send({"type": "ping"})
        assert (await late.receive(5))["type"] == "pong"
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        refused = await http.post(
            "/streams/gauges", json={"data": 1}, headers=live.headers("viewer")
        )
    assert refused.status_code == 403


async def test_the_wsclient_helper_closes_promptly_with_unread_events(
    live_royal: LiveRoyalFactory,
) -> None:
    live = await live_royal()
    client = WSClient(live.ws_url, token=live.tokens["viewer"])
    await client.__aenter__()
    assert client.connection is not None
    try:
        assert (await client.subscribe(["alerts"]))["type"] == "subscribed"
        for n in range(40):
            await live.publish("alerts", {"n": n})
        await wait_counter(live, "delivered", lambda n: n >= 40, timeout=5)
        await asyncio.wait_for(client.__aexit__(None, None, None), 3)
        assert client.connection.close_code == 1000
    finally:
        client.connection.transport.abort()


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_events_of_every_frame_size_arrive_whole_with_and_without_compression(
    live_royal: LiveRoyalFactory, compression: str | None
) -> None:
    """Uncompressed text frames are built by Royal (royal/hypercorn_shortcuts.py), compressed ones
    by wsproto: a strict client reads both, at every length encoding."""
    live = await live_royal()
    sizes = [1, 100, 126, 70_000]  # data lengths around the 125 and 65,535-byte frame limits
    async with connect(
        live.ws_url,
        additional_headers=live.headers("viewer"),
        compression=compression,
        max_size=None,
    ) as client:
        await client.send(json.dumps({"type": "subscribe", "topics": ["alerts"]}))
        assert json.loads(await asyncio.wait_for(client.recv(), 5))["type"] == "subscribed"
        for size in sizes:
            await live.publish("alerts", {"text": "é" * (size // 2) + "x" * (size % 2)})
        for size in sizes:
            message = json.loads(await asyncio.wait_for(client.recv(), 5))
            assert message["type"] == "event", message
            assert len(message["data"]["text"]) == size // 2 + size % 2


async def test_an_idle_socket_gets_a_heartbeat_each_interval_and_events_meanwhile(
    live_royal: LiveRoyalFactory,
) -> None:
    live = await live_royal(env={"ROYAL_STREAM_HEARTBEAT_SECONDS": "0.3"})
    async with WSClient(live.ws_url, token=live.tokens["viewer"]) as client:
        assert await client.subscribe(["alerts"]) == {"type": "subscribed", "topics": ["alerts"]}
        started = time.monotonic()
        beats = 0
        while beats < 4:
            assert (await client.receive(5))["type"] == "heartbeat"
            beats += 1
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 3.0, elapsed  # about one per 0.3 s, neither bunched nor lost
        event_id = await live.publish("alerts", {"n": 1})
        while (message := await client.receive(5))["type"] == "heartbeat":
            pass
        assert (message["type"], message["id"]) == ("event", event_id)
