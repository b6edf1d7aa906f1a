"""Royal plus one slow public route, for requests that are in flight when a drain starts.

``royal serve --app 'tests.reliability.slow_app:create_app()'``; ``GET /slow?seconds=2``.
"""

from __future__ import annotations

import asyncio

from quart import Quart, request

import royal
from royal.auth import public


def create_app() -> Quart:
    app = royal.create_app()

    @app.get("/slow")
    @public
    async def slow() -> dict[str, float]:
        seconds = float(request.args.get("seconds", "1"))
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    return app
