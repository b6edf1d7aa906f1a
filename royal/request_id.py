"""X-Request-ID: echo the caller's id (when it is sane) or make one, on every response.

The id lands in ``g.request_id`` so error logs and later log lines can name it.
"""

from __future__ import annotations

import os
import re

from quart import Quart, Response, g, request

HEADER = "X-Request-ID"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def init_app(app: Quart) -> None:
    @app.before_request
    async def _assign_request_id() -> None:
        offered = request.headers.get(HEADER, "")
        g.request_id = offered if _SANE.match(offered) else os.urandom(16).hex()

    @app.after_request
    async def _echo_request_id(response: Response) -> Response:
        request_id = getattr(g, "request_id", None)
        if request_id is not None:
            response.headers[HEADER] = request_id
        return response
