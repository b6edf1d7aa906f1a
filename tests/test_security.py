"""Security headers, CORS allowlist, client IP behind trusted proxies, WebSocket Origin check."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from quart import Blueprint, Quart, Response, g, websocket
from quart.typing import TestClientProtocol as Client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from royal import security
from royal.auth import public
from royal.config import ConfigError

GOOD = "https://good.example"
EVIL = "https://evil.example"

probe = Blueprint("probe", __name__)


@probe.get("/probe/json")
@public
async def json_probe() -> dict[str, str]:
    """A normal JSON response."""
    return {"ok": "yes"}


@probe.get("/probe/ip")
@public
async def ip_probe() -> dict[str, str]:
    """Say who the client is."""
    return {"ip": g.client_ip}


@probe.get("/probe/boom")
@public
async def boom() -> str:
    """Fail unexpectedly."""
    raise RuntimeError("boom")


@probe.get("/probe/own-csp")
@public
async def own_csp() -> Response:
    """Set a full CSP, as the dashboard will."""
    return Response("<p>hi</p>", headers={"Content-Security-Policy": "default-src 'self'"})


@probe.websocket("/probe/ws")
@public
async def echo_ws() -> None:
    await websocket.accept()
    while True:
        await websocket.send(await websocket.receive())


@probe.websocket("/probe/ws-ip")
@public
async def ip_ws() -> None:
    await websocket.accept()
    await websocket.send(g.client_ip)


@probe.websocket("/probe/ws-private")
async def private_ws() -> None:
    await websocket.accept()


def secured(app: Quart) -> Quart:
    """The app with royal.security installed once (create_app may already do it) and probes."""
    if security.EXTENSION not in app.extensions:
        security.init_app(app)
    app.register_blueprint(probe)
    return app


MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture(name="make_client")
async def _make_client(make_app: Callable[..., Quart]) -> AsyncIterator[MakeClient]:
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> Client:
            app = secured(make_app(**overrides))
            test_app = app.test_app()  # runs while_serving: connect + migrate
            await test_app.startup()
            stack.push_async_callback(test_app.shutdown)
            return app.test_client()

        yield make


@pytest.fixture(name="client")
async def _client(make_client: MakeClient) -> Client:
    return await make_client(CORS_ORIGINS=[GOOD])


def assert_security_headers(response: Response) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in response.headers  # plain http


@pytest.mark.parametrize(
    ("path", "status"), [("/probe/json", 200), ("/no/such/page", 404), ("/probe/boom", 500)]
)
async def test_security_headers_on_every_response(client: Client, path: str, status: int) -> None:
    response = await client.get(path)
    assert response.status_code == status
    assert_security_headers(response)


async def test_handler_csp_is_kept(client: Client) -> None:
    response = await client.get("/probe/own-csp")
    assert response.headers["Content-Security-Policy"] == "default-src 'self'"
    assert response.headers["X-Frame-Options"] == "DENY"


async def test_hsts_only_over_https(make_client: MakeClient) -> None:
    client = await make_client(HSTS_SECONDS=600)
    response = await client.get("/probe/json", scheme="https")
    assert response.headers["Strict-Transport-Security"] == "max-age=600"
    assert "Strict-Transport-Security" not in (await client.get("/probe/json")).headers


@pytest.mark.parametrize(
    ("trusted", "proto", "hsts"),
    [(["127.0.0.1"], "https", True), ([], "https", False), (["127.0.0.1"], "http", False)],
)
async def test_hsts_behind_a_proxy_that_terminates_tls(
    make_client: MakeClient, trusted: list[str], proto: str, hsts: bool
) -> None:
    """X-Forwarded-Proto counts only from a trusted proxy (the test client's peer is
    127.0.0.1)."""
    client = await make_client(HSTS_SECONDS=600, TRUSTED_PROXIES=trusted)
    response = await client.get(
        "/probe/json",
        headers={"X-Forwarded-Proto": proto},
        scope_base={"client": ("127.0.0.1", 1)},
    )
    assert ("Strict-Transport-Security" in response.headers) is hsts


async def test_auth_blueprint_responses_are_not_cached() -> None:
    app = Quart(__name__)
    security.init_app(app)
    auth = Blueprint("auth", __name__)

    @auth.post("/auth/token")
    async def token() -> dict[str, str]:
        return {"token": "t"}

    @auth.get("/auth/cacheable")
    async def cacheable() -> Response:
        return Response("public", headers={"Cache-Control": "max-age=60"})

    app.register_blueprint(auth)
    client = app.test_client()
    assert (await client.post("/auth/token")).headers["Cache-Control"] == "no-store"
    assert (await client.get("/auth/cacheable")).headers["Cache-Control"] == "max-age=60"


async def test_royal_auth_responses_are_not_cached(client: Client) -> None:
    response = await client.post("/auth/login", json={})
    assert response.status_code == 400
    assert response.headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in (await client.get("/healthz")).headers


async def test_preflight_from_allowed_origin(client: Client) -> None:
    response = await client.options(
        "/auth/login",
        headers={
            "Origin": GOOD,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type, Authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == GOOD
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed_headers = response.headers["Access-Control-Allow-Headers"].lower()
    assert "content-type" in allowed_headers and "authorization" in allowed_headers
    assert response.headers["Access-Control-Max-Age"] == "600"


async def test_preflight_from_other_origin_gets_no_cors(client: Client) -> None:
    response = await client.options(
        "/auth/login", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers


async def test_simple_request_from_allowed_origin(client: Client) -> None:
    response = await client.get("/probe/json", headers={"Origin": GOOD})
    assert response.headers["Access-Control-Allow-Origin"] == GOOD
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    exposed = response.headers["Access-Control-Expose-Headers"].lower()
    assert "x-request-id" in exposed and "retry-after" in exposed


async def test_simple_request_from_other_origin_gets_no_cors(client: Client) -> None:
    response = await client.get("/probe/json", headers={"Origin": EVIL})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_no_cors_origins_means_no_cross_origin_access(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.get("/probe/json", headers={"Origin": GOOD})
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_wildcard_without_credentials_is_allowed(make_client: MakeClient) -> None:
    client = await make_client(CORS_ORIGINS=["*"], CORS_ALLOW_CREDENTIALS=False)
    response = await client.get("/probe/json", headers={"Origin": EVIL})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize(
    "overrides",
    [
        {"CORS_ORIGINS": ["*"]},
        {"CORS_ORIGINS": "https://a.example,*"},
        {"CORS_ORIGINS": ["good.example"]},
        {"CORS_ORIGINS": ["https://good.example/app"]},
        {"TRUSTED_PROXIES": ["10.0.0.0/33"]},
    ],
)
def test_unsafe_or_mistyped_settings_are_refused(
    make_app: Callable[..., Quart], overrides: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError):
        secured(make_app(**overrides))


@pytest.mark.parametrize(
    ("proxies", "peer", "forwarded_for", "expected"),
    [
        # No trusted proxies: a spoofed header never changes who the client is.
        ([], "203.0.113.9", "1.2.3.4", "203.0.113.9"),
        # A client talking to Royal directly cannot spoof either.
        (["127.0.0.1"], "203.0.113.9", "1.2.3.4", "203.0.113.9"),
        # Behind one proxy, the rightmost entry is what the proxy saw; left of it is forged.
        (["127.0.0.1"], "127.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),
        # A chain of trusted proxies (CIDR) is skipped.
        (
            ["127.0.0.1", "10.0.0.0/8"],
            "127.0.0.1",
            "6.6.6.6, 198.51.100.7, 10.1.2.3, 10.0.0.4",
            "198.51.100.7",
        ),
        # A malformed entry stops the walk at the last trusted hop.
        (["127.0.0.1", "10.0.0.0/8"], "127.0.0.1", "198.51.100.7, junk, 10.0.0.4", "10.0.0.4"),
        # Only trusted hops: the leftmost one is the best answer.
        (["127.0.0.1", "10.0.0.0/8"], "127.0.0.1", "10.0.0.5", "10.0.0.5"),
        # A trusted peer that forwarded nothing is itself the client.
        (["127.0.0.1"], "127.0.0.1", None, "127.0.0.1"),
        # A dual-stack socket reports IPv4 peers as IPv4-mapped IPv6.
        (["127.0.0.1"], "::ffff:127.0.0.1", "2001:db8::1", "2001:db8::1"),
    ],
)
async def test_client_ip(
    make_client: MakeClient,
    proxies: list[str],
    peer: str,
    forwarded_for: str | None,
    expected: str,
) -> None:
    client = await make_client(TRUSTED_PROXIES=proxies)
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    response = await client.get("/probe/ip", headers=headers, scope_base={"client": (peer, 1)})
    assert await response.get_json() == {"ip": expected}


async def test_client_ip_reads_every_forwarded_for_header(make_client: MakeClient) -> None:
    client = await make_client(TRUSTED_PROXIES=["127.0.0.1"])
    headers = [("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-For", "192.0.2.1")]
    response = await client.get(
        "/probe/ip", headers=headers, scope_base={"client": ("127.0.0.1", 1)}
    )
    assert await response.get_json() == {"ip": "192.0.2.1"}


async def test_client_ip_for_websockets(make_client: MakeClient) -> None:
    client = await make_client(TRUSTED_PROXIES=["127.0.0.1"])
    async with client.websocket(
        "/probe/ws-ip",
        headers={"X-Forwarded-For": "198.51.100.7"},
        scope_base={"client": ("127.0.0.1", 1)},
    ) as ws:
        assert await ws.receive() == "198.51.100.7"


@pytest.fixture(name="ws_url")
async def _ws_url(make_app: Callable[..., Quart]) -> AsyncIterator[str]:
    """A real Hypercorn on 127.0.0.1 serving the secured app; yields its ws:// base URL.
    127.0.0.1 is a trusted proxy, as nginx on the same host would be."""
    app = secured(make_app(CORS_ORIGINS=[GOOD], TRUSTED_PROXIES=["127.0.0.1"]))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    config = HypercornConfig()
    config.bind = [f"fd://{listener.detach()}"]  # Hypercorn owns and closes it
    config.graceful_timeout = 1
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=10)


async def test_websocket_from_foreign_origin_is_refused_with_403(ws_url: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{ws_url}/probe/ws", origin=Origin(EVIL), proxy=None):
            pass
    assert refused.value.response.status_code == 403
    assert b"ORIGIN_NOT_ALLOWED" in refused.value.response.body


@pytest.mark.parametrize(("origin", "status"), [(EVIL, 403), (GOOD, 401)])
async def test_origin_is_checked_before_authentication(
    ws_url: str, origin: str, status: int
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{ws_url}/probe/ws-private", origin=Origin(origin), proxy=None):
            pass
    assert refused.value.response.status_code == status


@pytest.mark.parametrize("origin", [GOOD, None, "same-origin"])
async def test_websocket_from_allowed_origin_is_accepted(ws_url: str, origin: str | None) -> None:
    if origin == "same-origin":
        origin = ws_url.replace("ws://", "http://")
    sent_origin = Origin(origin) if origin is not None else None
    async with connect(f"{ws_url}/probe/ws", origin=sent_origin, proxy=None) as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), timeout=5) == "hello"


@pytest.mark.parametrize(("proto", "accepted"), [("https", True), ("http", False)])
async def test_own_https_origin_behind_a_tls_proxy_is_accepted(
    ws_url: str, proto: str, accepted: bool
) -> None:
    """nginx terminates TLS: the page is https://host, the handshake reaches Royal as ws://."""
    own = ws_url.replace("ws://", "https://")
    handshake = connect(
        f"{ws_url}/probe/ws",
        origin=Origin(own),
        additional_headers={"X-Forwarded-Proto": proto},
        proxy=None,
    )
    if not accepted:
        with pytest.raises(InvalidStatus) as refused:
            async with handshake:
                pass
        assert refused.value.response.status_code == 403
        return
    async with handshake as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), timeout=5) == "hello"
