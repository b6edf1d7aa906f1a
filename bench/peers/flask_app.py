"""The Flask peer: serve with Gunicorn, ``gunicorn "bench.peers.flask_app:create_app()"``.

Use the sync or gthread worker for the HTTP workloads. The SSE and WebSocket routes
(``flask_streams``) are registered only under the gevent worker, whose monkey-patching makes
a blocked stream cost a greenlet instead of a thread.
"""

from __future__ import annotations

import itertools
from typing import Any

import requests
from flask import Blueprint, Flask, current_app, request
from flask.typing import ResponseReturnValue
from gevent import monkey  # type: ignore[import-untyped]  # gevent ships no type hints
from pydantic import ValidationError
from requests.adapters import HTTPAdapter

from bench.peers import flask_db
from bench.peers.config import PeerConfig
from bench.peers.contract import ItemIn

bp = Blueprint("workloads", __name__)
UPSTREAM_CONNECTIONS = 1000  # connections kept open to the upstream (one per waiting thread)


def create_app(config: PeerConfig | None = None) -> Flask:
    config = config or PeerConfig.from_env()
    app = Flask(__name__)
    flask_db.init_app(app, config)
    app.config["UPSTREAM_URL"] = config.upstream_url
    app.extensions["peer.upstream"] = _upstream_session()
    app.extensions["peer.item_ids"] = itertools.count(1)
    app.register_error_handler(ValidationError, _validation_error)
    app.register_blueprint(bp)
    if monkey.is_module_patched("threading"):
        from bench.peers import flask_streams

        flask_streams.init_app(app)
    return app


def _upstream_session() -> requests.Session:
    """One session shared by every thread: urllib3's pool is thread-safe, and nothing here
    changes the session's state (cookies, auth) while requests are in flight.

    requests rather than httpx.Client: with 50 threads calling the upstream, httpx's pool
    cost ~60% more CPU per call than urllib3's (measured on a 2-core VM).
    """
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=UPSTREAM_CONNECTIONS))
    return session


def _validation_error(error: ValidationError) -> ResponseReturnValue:
    details = error.errors(include_url=False, include_context=False, include_input=False)
    return {"error": "VALIDATION_ERROR", "details": details}, 400


@bp.get("/json")
def hello() -> ResponseReturnValue:
    """A small JSON object."""
    return {"ok": True, "backend": "flask", "items": [1, 2, 3]}


@bp.get("/rows/<int:row_id>")
def get_row(row_id: int) -> ResponseReturnValue:
    """One row of ``items``."""
    row = flask_db.get_rows().select_row(row_id)
    if row is None:
        return {"error": "ROW_NOT_FOUND"}, 404
    return row


@bp.post("/validated")
def create_item() -> ResponseReturnValue:
    """Validate the body with pydantic and echo it with a new id."""
    item = ItemIn.model_validate_json(request.get_data())
    item_id = next(current_app.extensions["peer.item_ids"])
    return {"id": item_id, **item.model_dump()}, 201


@bp.get("/upstream")
def call_upstream() -> ResponseReturnValue:
    """The JSON of a call to the (50 ms) upstream service."""
    url: str | None = current_app.config["UPSTREAM_URL"]
    if url is None:
        return {"error": "NO_UPSTREAM", "message": "PEER_UPSTREAM_URL is not set."}, 503
    response = current_app.extensions["peer.upstream"].get(url, timeout=10)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data
