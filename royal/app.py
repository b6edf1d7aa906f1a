"""``RoyalQuart``: Quart with a shorter path per request, and the same behaviour.

Profiles of a small JSON request (bench/README.md) showed Quart spending a large share of its
time on machinery around the handler rather than in it:

- every HTTP request ran in three new tasks (a body receiver, the handler, and the task
  ``asyncio.wait_for`` makes for the response timeout). When the whole body came with the first
  ASGI message (every GET, every small POST) Royal handles the request in the server's task.
  A receiver task is started only while a streamed body (SSE) is sent, where it is the only way
  to learn that the client went away; a body that arrives in pieces takes Quart's own path;
- ``ensure_async`` inspected each hook and view for being a coroutine function on every call;
  the answer is kept;
- the cookie session was opened (an ``itsdangerous`` signer built) on every request. Royal
  keeps no cookie session (clients hold tokens), so it has none;
- each ``headers.get()`` of a header the request lacks built and caught a werkzeug
  ``BadRequestKeyError`` (a dozen per request across the hooks); ``request.blueprints`` was
  worked out again at each of its several uses.

Hooks, error handlers, signals, timeouts and the cancellation of a stream whose client left
work as in Quart; the test-suite runs on this class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from functools import lru_cache
from typing import Any, cast

from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    HTTPResponseStartEvent,
)
from quart import Quart, Request, Response
from quart.asgi import (
    ASGIHTTPConnection,
    _handle_exception,  # a traceback page in debug, else re-raised
)
from quart.helpers import _split_blueprint_path
from quart.routing import QuartMap
from quart.sessions import SessionInterface, SessionMixin
from quart.wrappers.response import DataBody
from werkzeug.datastructures import Headers, ImmutableDict
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter, Map
from werkzeug.wrappers import Response as WerkzeugResponse

from royal.errors import JSONRequest
from royal.pagination import MAX_ID
from royal.request_body import LightBody
from royal.stream_body import StreamBody
from royal.watching import run_while_watching
from royal.websocket import RoyalWebsocket, RoyalWebsocketConnection

_MISSING = object()


class NoSessions(SessionInterface):
    """No cookie session: ``session`` is an empty, read-only NullSession on every request."""

    async def open_session(self, app: Quart, request: Any) -> SessionMixin | None:
        return None

    async def save_session(self, app: Quart, session: SessionMixin, response: Any) -> None:
        """Nothing to save."""


class RequestHeaders(Headers):
    """Request headers whose ``get()`` and ``in`` answer a missing name without an exception
    (``headers[name]`` still raises werkzeug's BadRequestKeyError, a 400)."""

    def get(self, key: Any, default: Any = None, type: Any = None) -> Any:  # type: ignore[override]  # noqa: A002
        if type is not None or not isinstance(key, str):
            return super().get(key, default, type)
        wanted = key.lower()
        for name, value in self._list:
            if name.lower() == wanted:
                return value
        return default

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING


class RoyalRequest(JSONRequest):
    body_class = LightBody

    @property
    def blueprints(self) -> list[str]:
        """Quart's answer, from a cache (it depends on the endpoint only)."""
        return list(_blueprint_path(self.blueprint))


@lru_cache(maxsize=1024)
def _encoded_header(name: str, value: str) -> tuple[bytes, bytes]:
    """quart.utils.encode_headers for one header, shared: a long-lived stream's response
    headers (Hypercorn keeps them for its access log) are mostly the same security headers,
    and ~25 small bytes objects per open stream otherwise (W7)."""
    return name.lower().encode(), value.encode()


@lru_cache(maxsize=256)
def _blueprint_path(name: str | None) -> tuple[str, ...]:
    return () if name is None else tuple(_split_blueprint_path(name))


class RoyalHTTPConnection(ASGIHTTPConnection):
    """One HTTP request, handled in the server's task when its body is already complete."""

    def _create_request_from_scope(self, send: ASGISendCallable) -> Request:
        request = super()._create_request_from_scope(send)
        request.headers.__class__ = RequestHeaders  # the same data, cheaper lookups
        return request

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        first = await receive()
        if first["type"] != "http.request":
            return  # the client left before its request was complete
        if first.get("more_body", False):
            # The body arrives in pieces: receive it beside the handler, as Quart does.
            await super().__call__(_replaying(first, receive), send)
            return
        request = self._create_request_from_scope(send)
        request.body.append(first.get("body", b""))
        request.body.set_complete()
        await self.handle_request(request, send, receive)

    async def handle_request(
        self,
        request: Request,
        send: ASGISendCallable,
        receive: ASGIReceiveCallable | None = None,
    ) -> None:
        """Quart's handle_request with a cheaper timeout, watching the client only while a
        streamed body is sent (``receive`` is None when Quart's receiver task already does)."""
        try:
            response = await self.app.handle_request(request)
        except Exception as error:
            response = await _handle_exception(self.app, error)
        timeout = self._timeout(response)
        if receive is None or _in_memory(response):
            await self._send_within(send, response, timeout)
            return
        await run_while_watching(
            self._send_within(send, response, timeout), _until_disconnected(receive)
        )

    async def _send_response(self, send: ASGISendCallable, response: Any) -> None:
        body = getattr(response, "response", None)
        if not isinstance(body, StreamBody):
            await super()._send_response(send, response)
            return
        headers = [_encoded_header(name, value) for name, value in response.headers.items()]
        start = {"type": "http.response.start", "status": response.status_code, "headers": headers}
        await send(cast(HTTPResponseStartEvent, start))
        await body.send_through(send)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _timeout(self, response: Any) -> float | None:
        if isinstance(response, Response) and response.timeout is not Ellipsis:
            return cast(float | None, response.timeout)
        return cast(float | None, self.app.config["RESPONSE_TIMEOUT"])

    async def _send_within(
        self, send: ASGISendCallable, response: Any, timeout: float | None
    ) -> None:
        with suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._send_response(send, response)


class IdConverter(IntegerConverter):
    """``<int:...>`` in Royal's routes: an id, 0 to 2**63 - 1. A larger number is a 404 (no such
    thing) instead of overflowing the database's 64-bit integers (a 500).

    It raises NotFound itself: werkzeug turns a converter's ValidationError into a 405 when
    the same path has a rule for another method (PATCH /api/alerts/<too big> would be a 405).
    """

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)

    def to_python(self, value: str) -> Any:
        if self.max is not None and (len(value) > len(str(self.max)) or int(value) > self.max):
            raise NotFound()
        return super().to_python(value)


class RoyalMap(QuartMap):
    default_converters = ImmutableDict({**QuartMap.default_converters, "int": IdConverter})


class RoyalQuart(Quart):
    asgi_http_class = RoyalHTTPConnection
    asgi_websocket_class = RoyalWebsocketConnection
    websocket_class = RoyalWebsocket
    url_map_class = RoyalMap
    request_class = RoyalRequest
    session_interface = NoSessions()  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._async_versions: dict[Callable[..., Any], Callable[..., Awaitable[Any]]] = {}

    def ensure_async(self, func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        """Quart's answer, computed once per function (hooks and views run on every request)."""
        try:
            return self._async_versions[func]
        except KeyError:
            version = self._async_versions[func] = super().ensure_async(func)
            return version
        except TypeError:  # an unhashable callable: ask every time
            return super().ensure_async(func)


def _in_memory(response: Any) -> bool:
    """Whether the body is already in memory: sent at once, without waiting for anything."""
    return isinstance(response, WerkzeugResponse) or isinstance(response.response, DataBody)


def _replaying(first: ASGIReceiveEvent, receive: ASGIReceiveCallable) -> ASGIReceiveCallable:
    """``receive``, giving back ``first`` (already read) once before the rest."""
    pending = [first]

    async def replay() -> ASGIReceiveEvent:
        return pending.pop() if pending else await receive()

    return replay


async def _until_disconnected(receive: ASGIReceiveCallable) -> None:
    while True:
        if (await receive())["type"] == "http.disconnect":
            return
