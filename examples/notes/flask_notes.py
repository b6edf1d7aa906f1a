"""The notes blueprint as it was in Flask: plain Flask and sqlite3, in the style of the
Flask tutorial (flaskr). A reference for the port in ``royal_notes.py``; Royal never runs it.

    flask --app 'examples.notes.flask_notes:create_app()' init-db
    flask --app 'examples.notes.flask_notes:create_app()' create-user alice   # prints a token
    flask --app 'examples.notes.flask_notes:create_app()' run

The things the port removes are all here: the connection lives on ``g`` and is found through
``current_app`` (so nothing runs outside a request or app context), the user is loaded by a
hand-written ``before_app_request`` hook, validation and error bodies are written by hand, and
the schema is a ``CREATE TABLE IF NOT EXISTS`` script run by a CLI command.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

P = ParamSpec("P")
R = TypeVar("R")

bp = Blueprint("notes", __name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    username   TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS notes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      TEXT NOT NULL,
    content    TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(DATABASE=str(Path(app.instance_path) / "notes.sqlite3"))
    if test_config is not None:
        app.config.update(test_config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
    app.cli.add_command(create_user_command)
    app.register_error_handler(HTTPException, json_error)
    app.register_blueprint(bp, url_prefix="/notes")
    return app


# -- the database: one sqlite3 connection per request, on g -------------------------------


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = sqlite3.connect(current_app.config["DATABASE"])
        g.db.row_factory = sqlite3.Row
        g.db.execute("PRAGMA foreign_keys = ON")
    db: sqlite3.Connection = g.db
    return db


def close_db(error: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def init_db() -> None:
    get_db().executescript(SCHEMA)


def create_user(username: str) -> str:
    """Add a user; returns their API token (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    db = get_db()
    db.execute("INSERT INTO users (username, token_hash) VALUES (?, ?)", (username, _hash(token)))
    db.commit()
    return token


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@click.command("init-db")
def init_db_command() -> None:
    """Create the tables."""
    init_db()
    click.echo("Initialized the database.")


@click.command("create-user")
@click.argument("username")
def create_user_command(username: str) -> None:
    """Add a user and print their API token."""
    click.echo(create_user(username))


# -- auth and errors, by hand ------------------------------------------------------------


@bp.before_app_request
def load_user() -> None:
    g.user = None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        g.user = (
            get_db()
            .execute("SELECT id, username FROM users WHERE token_hash = ?", (_hash(token),))
            .fetchone()
        )


def error(
    status: int, message: str, *, code: str | None = None, detail: list[Any] | None = None
) -> Response:
    body: dict[str, Any] = {"error": message, "status_code": status}
    if code is not None:
        body["code"] = code
    if detail is not None:
        body["detail"] = detail
    response = jsonify(body)
    response.status_code = status
    return response


def json_error(exc: HTTPException) -> Response:
    return error(exc.code or 500, exc.name)


def login_required(view: Callable[P, R]) -> Callable[P, R | Response]:
    @functools.wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        if g.user is None:
            response = error(401, "Authentication required", code="AUTHENTICATION_REQUIRED")
            response.headers["WWW-Authenticate"] = 'Bearer realm="notes"'
            return response
        return view(*args, **kwargs)

    return wrapped


def validate_note(data: Any) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The cleaned note and a list of problems, one per bad field."""
    if not isinstance(data, dict):
        return {}, [{"field": "body", "msg": "Input should be a JSON object"}]
    problems: list[dict[str, Any]] = []
    title = data.get("title")
    if not isinstance(title, str):
        problems.append({"field": "title", "msg": "Field required, a string"})
    elif not 1 <= len(title.strip()) <= 200:
        problems.append({"field": "title", "msg": "Should have 1 to 200 characters"})
    content = data.get("content", "")
    if not isinstance(content, str) or len(content) > 10_000:
        problems.append({"field": "content", "msg": "A string of at most 10000 characters"})
    if problems:
        return {}, problems
    return {"title": str(title).strip(), "content": content}, []


def note_json(row: sqlite3.Row) -> dict[str, Any]:
    created = datetime.fromtimestamp(row["created_at"], UTC).isoformat(timespec="milliseconds")
    return {
        "id": row["id"],
        "title": row["title"],
        "content": row["content"],
        "created_at": created.replace("+00:00", "Z"),
    }


# -- the views -----------------------------------------------------------------------------


@bp.get("/", strict_slashes=False)
@login_required
def list_notes() -> Response:
    rows = get_db().execute(
        "SELECT * FROM notes WHERE owner_id = ? ORDER BY id DESC", (g.user["id"],)
    )
    return jsonify(notes=[note_json(row) for row in rows])


@bp.post("/", strict_slashes=False)
@login_required
def create_note() -> tuple[Response, int, dict[str, str]] | Response:
    note, problems = validate_note(request.get_json(silent=True))
    if problems:
        return error(400, "Bad Request", detail=problems)
    db = get_db()
    row = db.execute(
        """INSERT INTO notes (owner_id, title, content, created_at) VALUES (?, ?, ?, ?)
           RETURNING *""",
        (g.user["id"], note["title"], note["content"], time.time()),
    ).fetchone()
    db.commit()
    location = url_for("notes.get_note", note_id=row["id"])
    return jsonify(note_json(row)), 201, {"Location": location}


@bp.get("/<int:note_id>")
@login_required
def get_note(note_id: int) -> Response:
    row = (
        get_db()
        .execute("SELECT * FROM notes WHERE id = ? AND owner_id = ?", (note_id, g.user["id"]))
        .fetchone()
    )
    if row is None:
        return error(404, "Not Found", code="NOTE_NOT_FOUND")
    return jsonify(note_json(row))


@bp.delete("/<int:note_id>")
@login_required
def delete_note(note_id: int) -> tuple[str, int] | Response:
    db = get_db()
    deleted = db.execute(
        "DELETE FROM notes WHERE id = ? AND owner_id = ?", (note_id, g.user["id"])
    ).rowcount
    db.commit()
    if not deleted:
        return error(404, "Not Found", code="NOTE_NOT_FOUND")
    return "", 204
