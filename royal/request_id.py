"""X-Request-ID: echo the caller's id (when it is sane) or make one, on every response.

The id lands in ``g.request_id`` so error logs and later log lines can name it. The access log
(royal.access_log) reads it, the client's address and the status sent from the ASGI scope,
WebSocket handshakes included.
"""

from __future__ import annotations

import os
import re
from typing import Any, cast

from quart import Quart, Response, g, request, websocket
from quart.wrappers import BaseRequestWebsocket

from royal.access_log import CLIENT_KEY, REQUEST_ID_KEY, STATUS_KEY
from royal.security import client_ip

HEADER = "X-Request-ID"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def init_app(app: Quart) -> None:
    @app.before_request
    async def _assign_request_id() -> None:
        _assign(request)

    @app.before_websocket
    async def _assign_websocket_id() -> None:
        _assign(websocket)
        # Hypercorn logs the handshake before any after-hook runs.
        cast(dict[str, Any], websocket.scope)[CLIENT_KEY] = client_ip(websocket)

    @app.after_request
    async def _echo_request_id(response: Response) -> Response:
        request_id = getattr(g, "request_id", None)
        if request_id is not None:
            response.headers[HEADER] = request_id
        scope = cast(dict[str, Any], request.scope)
        scope[CLIENT_KEY] = g.get("client_ip")  # resolved by royal.security's hook
        # Hypercorn logs a response whose client hung up (an SSE stream) without its status.
        scope[STATUS_KEY] = response.status_code
        return response


def _assign(connection: BaseRequestWebsocket) -> None:
    offered = connection.headers.get(HEADER, "")
    g.request_id = offered if _SANE.match(offered) else os.urandom(16).hex()
    cast(dict[str, Any], connection.scope)[REQUEST_ID_KEY] = g.request_id
