"""Security headers, CORS from an allowlist, the client's IP, and the WebSocket Origin check.

CORS does not apply to WebSockets and browsers send cookies on any cross-site handshake, so
without the Origin check any web page could open a socket as the logged-in user (CSWSH).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from quart import Quart, Response, current_app, g, request
from quart import websocket as current_websocket
from quart.wrappers import BaseRequestWebsocket, Websocket
from quart_cors import cors

from royal.config import ConfigError
from royal.errors import APIError

EXTENSION = "royal.security"

# Defaults for the keys read from app.config.
CORS_ORIGINS: tuple[str, ...] = ()  # exact origins; empty means no cross-origin access
CORS_ALLOW_CREDENTIALS = True
CORS_ALLOW_HEADERS = ("Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID")
CORS_ALLOW_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CORS_EXPOSE_HEADERS = ("X-Request-ID", "Retry-After")
CORS_MAX_AGE = 600  # seconds a browser may cache a preflight answer
WS_ALLOWED_ORIGINS: tuple[str, ...] | None = None  # None: the same as CORS_ORIGINS
TRUSTED_PROXIES: tuple[str, ...] = ()  # IPs or CIDR networks whose X-Forwarded-For counts
REFERRER_POLICY = "no-referrer"
HSTS_SECONDS = 365 * 24 * 3600  # sent only on https requests; 0 turns it off
WS_MAX_MESSAGE_BYTES = 64 * 1024  # enforced by the /ws handler, which closes with 1009

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Settings:
    """The parsed settings, checked once at startup."""

    trusted_proxies: tuple[Network, ...]
    ws_origins: frozenset[str]
    referrer_policy: str
    hsts_seconds: int


def init_app(app: Quart) -> None:
    """Check the settings (a bad one stops startup) and install the hooks."""
    config = app.config
    origins = _origins("CORS_ORIGINS", config.get("CORS_ORIGINS", CORS_ORIGINS))
    credentials = bool(config.get("CORS_ALLOW_CREDENTIALS", CORS_ALLOW_CREDENTIALS))
    if "*" in origins and credentials:
        raise ConfigError(
            'CORS_ORIGINS contains "*" while CORS_ALLOW_CREDENTIALS is true: list exact origins.'
        )
    ws_setting = config.get("WS_ALLOWED_ORIGINS", WS_ALLOWED_ORIGINS)
    settings = Settings(
        trusted_proxies=_networks(config.get("TRUSTED_PROXIES", TRUSTED_PROXIES)),
        ws_origins=frozenset(
            origins if ws_setting is None else _origins("WS_ALLOWED_ORIGINS", ws_setting)
        ),
        referrer_policy=str(config.get("REFERRER_POLICY", REFERRER_POLICY) or ""),
        hsts_seconds=int(config.get("HSTS_SECONDS", HSTS_SECONDS)),
    )
    app.extensions[EXTENSION] = settings

    if origins:
        # quart-cors also checks WebSocket origins, but it answers 400 and refuses clients that
        # send no Origin at all; keep only its HTTP hook and use check_websocket_origin instead.
        websocket_hooks = list(app.before_websocket_funcs[None])
        cors(
            app,
            allow_origin=origins,
            allow_credentials=credentials,
            allow_headers=_strings(config.get("CORS_ALLOW_HEADERS", CORS_ALLOW_HEADERS)),
            allow_methods=_strings(config.get("CORS_ALLOW_METHODS", CORS_ALLOW_METHODS)),
            expose_headers=_strings(config.get("CORS_EXPOSE_HEADERS", CORS_EXPOSE_HEADERS)),
            max_age=int(config.get("CORS_MAX_AGE", CORS_MAX_AGE)),
        )
        app.before_websocket_funcs[None] = websocket_hooks

    @app.before_request
    async def _remember_client_ip() -> None:
        g.client_ip = client_ip(request)

    @app.before_websocket
    async def _check_handshake() -> None:
        g.client_ip = client_ip(current_websocket)
        check_websocket_origin(app, current_websocket)

    always = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "frame-ancestors 'none'"),
    ]
    if settings.referrer_policy:
        always.append(("Referrer-Policy", settings.referrer_policy))
    no_store = ("Cache-Control", "no-store")  # tokens must not sit in caches
    hsts = ("Strict-Transport-Security", f"max-age={settings.hsts_seconds}")

    @app.after_request
    async def _security_headers(response: Response) -> Response:
        wanted = always
        if request.blueprint == "auth":
            wanted = [*wanted, no_store]
        if settings.hsts_seconds > 0 and is_https(request):
            wanted = [*wanted, hsts]
        _add_missing(response, wanted)
        return response


def _add_missing(response: Response, wanted: list[tuple[str, str]]) -> None:
    """Add the headers the response does not have: a handler that sets one of them on
    purpose (the dashboard's CSP) wins. One pass over the few headers a response has, where
    a lookup per name would scan them (and raise a KeyError inside werkzeug) each time."""
    present = {name.lower() for name in response.headers.keys()}
    for name, value in wanted:
        if name.lower() not in present:
            response.headers.add(name, value)


def client_ip(connection: BaseRequestWebsocket) -> str:
    """The client's address, for a request or a WebSocket.

    The socket peer, unless the peer is a trusted proxy: then X-Forwarded-For is read from the
    right, skipping trusted proxies, and the first untrusted entry wins (everything left of it
    is whatever the client chose to send). A malformed entry stops the walk at the last trusted
    hop, as does a chain of trusted proxies only: a value no trusted proxy could have written
    must never become someone's identity, so those clients share the proxy's rate limit instead.
    """
    peer = connection.remote_addr or ""
    address = _parse_ip(peer)
    if address is None:
        return peer
    settings: Settings | None = current_app.extensions.get(EXTENSION)
    trusted = settings.trusted_proxies if settings is not None else ()
    if not _is_trusted(address, trusted):
        return str(address)
    hops = [
        hop.strip()
        for value in connection.headers.getlist("X-Forwarded-For")
        for hop in value.split(",")
    ]
    for hop in reversed(hops):
        hop_address = _parse_ip(hop)
        if hop_address is None:
            break
        address = hop_address
        if not _is_trusted(address, trusted):
            break
    return str(address)


def is_https(connection: BaseRequestWebsocket) -> bool:
    """Whether the client reached Royal over TLS: directly, or through a trusted proxy that
    terminated TLS and says so in X-Forwarded-Proto (its last value: the nearest proxy's).
    HSTS, the Secure cookie and the WebSocket origin check follow what the browser sees."""
    if connection.scheme in ("https", "wss"):
        return True
    forwarded = connection.headers.getlist("X-Forwarded-Proto")
    if not forwarded:
        return False
    address = _parse_ip(connection.remote_addr or "")
    settings: Settings | None = current_app.extensions.get(EXTENSION)
    trusted = settings.trusted_proxies if settings is not None else ()
    if address is None or not _is_trusted(address, trusted):
        return False
    return forwarded[-1].split(",")[-1].strip().lower() in ("https", "wss")


def check_websocket_origin(app: Quart, websocket: Websocket) -> None:
    """Refuse a browser handshake from a page that is neither allowed nor Royal's own origin.

    A handshake without Origin is not from a browser; authentication decides about it.
    """
    origin = websocket.headers.get("Origin")
    if origin is None:
        return
    origin = origin.lower()
    settings: Settings = app.extensions[EXTENSION]
    scheme = "https" if is_https(websocket) else "http"
    own = f"{scheme}://{websocket.host}".lower()
    if origin != own and origin not in settings.ws_origins and "*" not in settings.ws_origins:
        raise APIError(403, "ORIGIN_NOT_ALLOWED", f"WebSocket origin {origin} is not allowed")


def _origins(key: str, value: Any) -> list[str]:
    """Exact origins ("https://app.example" or "*"); a typo would silently deny, so it fails."""
    origins = [origin.lower().rstrip("/") for origin in _strings(value)]
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise ConfigError(f"{key}: {origin!r} is not an origin like https://app.example.")
        if origin != "*" and (parts.path or parts.query or parts.fragment):
            raise ConfigError(f"{key}: {origin!r} must be scheme://host[:port] only.")
    return origins


def _networks(value: Any) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in _strings(value))
    except ValueError as error:
        raise ConfigError(f"TRUSTED_PROXIES: {error}.") from None


def _strings(value: Any) -> list[str]:
    """A list from config: a JSON list (ROYAL_X='["a", "b"]') or a comma-separated string."""
    if value is None:
        return []
    items: Iterable[Any] = value.split(",") if isinstance(value, str) else value
    return [str(item).strip() for item in items if str(item).strip()]


@lru_cache(maxsize=4096)  # a worker sees the same few peers (proxies, clients) again and again
def _parse_ip(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return address


def _is_trusted(address: Address, trusted: Iterable[Network]) -> bool:
    return any(address in network for network in trusted)
