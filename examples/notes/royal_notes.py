"""The notes blueprint ported to Royal: the same HTTP contract as ``flask_notes.py``.

Serve it with Royal's own API beside it::

    royal serve --app 'examples.notes.royal_notes:create_app()'

What changed from the Flask original:

- views are ``async def``; the SQL moved into ``service.py`` and runs through Royal's one
  Database (``get_db()``) with ``:name`` bound parameters, on SQLite or PostgreSQL alike;
- the body is validated by quart-schema (a pydantic model), and a bad one gets Royal's
  400 JSON with a ``detail`` entry per bad field, before the view runs;
- the user comes from ``royal.auth`` (bearer token, cookie or stream ticket), not from a hand
  written ``before_request`` hook: every route needs a user unless marked ``@public``;
- the table comes from a numbered migration (``sql/<dialect>/9001_notes.sql``) applied by
  Royal's migration runner at start-up, instead of a ``flask init-db`` command.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints
from quart import Blueprint, Quart, url_for
from quart_schema import validate_request, validate_response

import royal
from examples.notes import service
from royal.auth import current_identity, login_required
from royal.config import ConfigSource
from royal.db import Database, get_db, migrate
from royal.db.migrations import Migration
from royal.errors import APIError

SQL_DIR = Path(__file__).resolve().parent / "sql"

bp = Blueprint("notes", __name__)

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class NoteIn(BaseModel):
    title: Title
    content: str = Field("", max_length=10_000)


class NoteOut(BaseModel):
    id: int
    title: str
    content: str
    created_at: str = Field(description="ISO-8601 UTC, e.g. 2025-01-31T12:00:00.000Z.")


class NoteList(BaseModel):
    notes: list[NoteOut]


def create_app(config: ConfigSource = None) -> Quart:
    """Royal's app plus the notes area: what ``royal serve --app`` builds in each worker."""
    app = royal.create_app(config)
    app.register_blueprint(bp, url_prefix="/notes")

    # Registered after Royal's own lifespan hooks, so the Database is connected and Royal's
    # tables (``users``, which notes reference) exist when this runs.
    @app.while_serving
    async def _notes_schema() -> AsyncGenerator[None, None]:
        if app.config["MIGRATE_ON_START"]:
            await migrate_notes(get_db())
        yield

    return app


async def migrate_notes(db: Database) -> list[Migration]:
    """Apply the example's migrations (``sql/<dialect>/9001_notes.sql``, ...) with Royal's
    runner: the same lock and ``schema_migration`` table, each one exactly once however many
    workers start together. Returns those applied by this call."""
    return await migrate(db, SQL_DIR)


def _out(note: service.Note) -> NoteOut:
    return NoteOut(
        id=note.id, title=note.title, content=note.content, created_at=note.created_at_iso
    )


@bp.get("/", strict_slashes=False)
@login_required
@validate_response(NoteList)
async def list_notes() -> NoteList:
    """List your notes, newest first."""
    notes = await service.select_notes(get_db(), current_identity().user_id)
    return NoteList(notes=[_out(note) for note in notes])


@bp.post("/", strict_slashes=False)
@login_required
@validate_request(NoteIn)
@validate_response(NoteOut, 201)
async def create_note(data: NoteIn) -> tuple[NoteOut, int, dict[str, str]]:
    """Write a note: a title (1-200 characters) and optional content."""
    note = await service.create_note(get_db(), current_identity().user_id, data.title, data.content)
    return _out(note), 201, {"Location": url_for("notes.get_note", note_id=note.id)}


@bp.get("/<int:note_id>")
@login_required
@validate_response(NoteOut)
async def get_note(note_id: int) -> NoteOut:
    """Fetch one of your notes; another user's note is a 404, as a missing one is."""
    note = await service.select_note(get_db(), current_identity().user_id, note_id)
    if note is None:
        raise APIError(404, "NOTE_NOT_FOUND")
    return _out(note)


@bp.delete("/<int:note_id>")
@login_required
async def delete_note(note_id: int) -> tuple[str, int]:
    """Delete one of your notes; answers 204 with an empty body."""
    if not await service.delete_note(get_db(), current_identity().user_id, note_id):
        raise APIError(404, "NOTE_NOT_FOUND")
    return "", 204
