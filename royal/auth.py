"""One identity on HTTP, SSE and WebSocket alike.

Every request and WebSocket handshake is authenticated before its handler runs, from (in order)
an ``Authorization: Bearer`` token, the session cookie, or, on GET requests and WebSocket
handshakes only, a single-use ``?ticket=`` (browsers' EventSource and WebSocket cannot set
headers). Long-lived tokens are never accepted in a URL. Everything requires a user unless its
view is marked ``@public``; ``login_required`` and ``roles_required`` read as in Flask-Login.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from quart import Quart, Request, Response, current_app, g, request, websocket
from quart.utils import run_sync
from quart.wrappers import Websocket
from werkzeug.local import LocalProxy
from werkzeug.wrappers import Response as WerkzeugResponse

from royal import user_commands
from royal.access_log import USER_ID_KEY
from royal.background import run_while_serving
from royal.db import get_db
from royal.errors import APIError
from royal.passwords import HashParameters, Passwords
from royal.revocation import RevocationWatcher
from royal.security import is_https
from royal.services import tokens
from royal.services.tokens import Identity
from royal.services.users import ROLES, role_at_least

AnyResponse = Response | WerkzeugResponse
P = ParamSpec("P")
R = TypeVar("R")

COOKIE_NAME = "royal_session"
SECURE_COOKIE_NAME = "__Host-royal_session"  # browsers accept __Host- cookies only when Secure
_PUBLIC = "_royal_public"
_ROLE = "_royal_role"
# quart-schema's documentation endpoints and static files (the dashboard's too) are public.
_PUBLIC_ENDPOINTS = {"static", "dashboard.static", "openapi", "swagger_ui", "redoc_ui", "scalar_ui"}


def init_app(app: Quart) -> None:
    parameters = HashParameters(
        time_cost=app.config["PASSWORD_TIME_COST"],
        memory_cost=app.config["PASSWORD_MEMORY_COST_KIB"],
        parallelism=app.config["PASSWORD_PARALLELISM"],
    )
    app.extensions["royal.passwords"] = Passwords(
        parameters, concurrency=app.config["PASSWORD_HASH_CONCURRENCY"]
    )
    watcher = RevocationWatcher(app.extensions["royal.db"], app.config["AUTH_RECHECK_SECONDS"])
    app.extensions["royal.revocations"] = watcher

    run_while_serving(app, "royal-revocation-watcher", watcher.run)

    app.before_request(_authenticate_request)
    app.before_websocket(_authenticate_websocket)
    app.cli.add_command(user_commands.user_command)


def get_passwords() -> Passwords:
    passwords: Passwords = current_app.extensions["royal.passwords"]
    return passwords


def get_revocations() -> RevocationWatcher:
    watcher: RevocationWatcher = current_app.extensions["royal.revocations"]
    return watcher


def public(func: Callable[P, R]) -> Callable[P, R]:
    """Mark a view as open to anonymous callers (health probes, login, metrics)."""
    setattr(func, _PUBLIC, True)
    return func


def is_public(view: Callable[..., Any]) -> bool:
    """Whether ``view`` (or a view it wraps) is open to anonymous callers."""
    return _is_public(view)


def required_role(view: Callable[..., Any]) -> str | None:
    """The lowest role ``roles_required`` admits to ``view``, or None."""
    role: str | None = getattr(view, _ROLE, None)
    return role


def current_identity() -> Identity:
    """The authenticated caller; raises 401 when there is none."""
    identity: Identity | None = g.get("identity")
    if identity is None:
        raise _unauthenticated()
    return identity


current_user = cast(Identity, LocalProxy(lambda: g.get("identity")))


def _awaitable(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """``func`` itself, or a plain ``def`` view run in a thread as Quart runs one (a view
    ported from Flask keeps working under these decorators)."""
    if inspect.iscoroutinefunction(func):
        return func
    return cast(Callable[P, Awaitable[R]], run_sync(func))


def login_required(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Require an authenticated user (HTTP, SSE and WebSocket routes alike)."""
    call = _awaitable(func)

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        current_identity()
        return await call(*args, **kwargs)

    return wrapper


def roles_required(*roles: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Require one of ``roles``; roles are a ladder, so a higher role passes too.

    ``@roles_required("operator")`` admits operators and admins, not viewers.
    """
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"roles_required needs roles from {ROLES}, got {roles}")
    minimum = min(roles, key=ROLES.index)

    def decorator(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        call = _awaitable(func)

        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            identity = current_identity()
            if not role_at_least(identity.role, minimum):
                raise APIError(403, "FORBIDDEN", f"Requires the {minimum} role or higher.")
            return await call(*args, **kwargs)

        setattr(wrapper, _ROLE, minimum)  # for the OpenAPI document (403)
        return wrapper

    return decorator


def _unauthenticated() -> APIError:
    return APIError(
        401,
        "AUTHENTICATION_REQUIRED",
        "Authentication required",
        headers={"WWW-Authenticate": 'Bearer realm="royal"'},
    )


async def _authenticate_request() -> None:
    if request.method == "OPTIONS":  # CORS preflights carry no credentials
        return
    await _authenticate(request, allow_ticket=request.method in ("GET", "HEAD"))


async def _authenticate_websocket() -> None:
    await _authenticate(websocket, allow_ticket=True)


async def _authenticate(connection: Request | Websocket, *, allow_ticket: bool) -> None:
    view = current_app.view_functions.get(connection.endpoint or "")
    is_public = view is None or connection.endpoint in _PUBLIC_ENDPOINTS or _is_public(view)
    g.identity = await _identify(connection, allow_ticket=allow_ticket and not is_public)
    if g.identity is not None:  # for the access log (royal.access_log)
        cast(dict[str, Any], connection.scope)[USER_ID_KEY] = g.identity.user_id
    elif not is_public:
        raise _unauthenticated()


def _is_public(view: Callable[..., Any]) -> bool:
    while view is not None:
        if getattr(view, _PUBLIC, False):
            return True
        view = getattr(view, "__wrapped__", None)  # type: ignore[assignment]
    return False


async def _identify(connection: Request | Websocket, *, allow_ticket: bool) -> Identity | None:
    db = get_db()
    scheme, _, credentials = connection.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return await tokens.resolve_access_token(db, credentials.strip())
    if "Cookie" in connection.headers:  # parsed only when there is one
        cookies = connection.cookies
        cookie = cookies.get(SECURE_COOKIE_NAME) or cookies.get(COOKIE_NAME)
        if cookie:
            return await tokens.resolve_access_token(db, cookie)
    ticket = connection.args.get("ticket") if allow_ticket else None
    if ticket:
        return await tokens.redeem_ticket(db, ticket)
    return None


def set_session_cookie(response: AnyResponse, token: str, max_age: int) -> None:
    """The dashboard's session: HttpOnly, SameSite=Strict, and Secure when served over TLS."""
    secure = is_https(request)
    response.set_cookie(
        SECURE_COOKIE_NAME if secure else COOKIE_NAME,
        token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="Strict",
    )


def clear_session_cookie(response: AnyResponse) -> None:
    for name in (COOKIE_NAME, SECURE_COOKIE_NAME):
        if name in request.cookies:
            response.delete_cookie(name, path="/", secure=name == SECURE_COOKIE_NAME)
