"""The Royal port of the notes blueprint: through Quart's test client, the service against a
real database of each dialect, and once over real HTTP under ``royal serve --app``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart.typing import TestClientProtocol as Client

from examples.notes import service
from examples.notes.royal_notes import migrate_notes
from examples.notes.tests.conftest import PASSWORD, REPO_ROOT, bearer
from royal.db import Database, connect_database
from royal.db.migrations import status
from royal.passwords import HashParameters, Passwords
from royal.services import users
from royal.testing import LiveServer

NOTE_NOT_FOUND = {"error": "Not Found", "status_code": 404, "code": "NOTE_NOT_FOUND"}


async def create(client: Client, token: str, **note: Any) -> dict[str, Any]:
    response = await client.post("/notes", json=note, headers=bearer(token))
    assert response.status_code == 201, await response.get_data()
    body: dict[str, Any] = await response.get_json()
    return body


async def test_every_route_requires_a_user(client: Client, tokens: dict[str, str]) -> None:
    note = await create(client, tokens["alice"], title="private")
    calls = [
        ("GET", "/notes"),
        ("POST", "/notes"),
        ("GET", f"/notes/{note['id']}"),
        ("DELETE", f"/notes/{note['id']}"),
    ]
    for method, path in calls:
        for headers in ({}, bearer("not-a-token"), {"Authorization": "Basic YWxpY2U6eA=="}):
            response = await client.open(path, method=method, json={"title": "x"}, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert await response.get_json() == {
                "error": "Authentication required",
                "status_code": 401,
                "code": "AUTHENTICATION_REQUIRED",
            }
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # Nothing was created or deleted by the refused calls.
    response = await client.get(f"/notes/{note['id']}", headers=bearer(tokens["alice"]))
    assert response.status_code == 200


async def test_create_list_get_delete(client: Client, tokens: dict[str, str]) -> None:
    alice = bearer(tokens["alice"])
    response = await client.post(
        "/notes", json={"title": "  Groceries  ", "content": "eggs, milk"}, headers=alice
    )
    assert response.status_code == 201
    first: dict[str, Any] = await response.get_json()
    assert first["title"] == "Groceries"  # stripped
    assert first["content"] == "eggs, milk"
    assert first["created_at"].endswith("Z")
    assert response.headers["Location"] == f"/notes/{first['id']}"
    second = await create(client, tokens["alice"], title="Call mum")
    assert second["content"] == ""

    listed = await client.get("/notes/", headers=alice)  # with or without the slash
    assert listed.status_code == 200
    assert [n["id"] for n in (await listed.get_json())["notes"]] == [second["id"], first["id"]]

    fetched = await client.get(f"/notes/{first['id']}", headers=alice)
    assert await fetched.get_json() == first

    deleted = await client.delete(f"/notes/{first['id']}", headers=alice)
    assert deleted.status_code == 204 and await deleted.get_data() == b""
    gone = await client.get(f"/notes/{first['id']}", headers=alice)
    assert gone.status_code == 404 and await gone.get_json() == NOTE_NOT_FOUND
    again = await client.delete(f"/notes/{first['id']}", headers=alice)
    assert again.status_code == 404 and await again.get_json() == NOTE_NOT_FOUND
    listed = await client.get("/notes", headers=alice)
    assert [n["id"] for n in (await listed.get_json())["notes"]] == [second["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": 42}, "title"),
        ({"title": "ok", "content": "x" * 10_001}, "content"),
        ({"title": "ok", "content": ["not", "text"]}, "content"),
        (["not", "an", "object"], "body"),
    ],
)
async def test_invalid_notes_get_a_400_naming_the_field(
    client: Client, tokens: dict[str, str], body: Any, field: str
) -> None:
    alice = bearer(tokens["alice"])
    response = await client.post("/notes", json=body, headers=alice)
    assert response.status_code == 400
    error = await response.get_json()
    assert error["error"] == "Bad Request" and error["status_code"] == 400
    assert [problem["field"] for problem in error["detail"]] == [field]
    assert all(problem["msg"] for problem in error["detail"])
    listed = await client.get("/notes", headers=alice)
    assert (await listed.get_json())["notes"] == []  # nothing stored


async def test_malformed_json_is_a_400(client: Client, tokens: dict[str, str]) -> None:
    response = await client.post(
        "/notes",
        data=b'{"title": ',
        headers={**bearer(tokens["alice"]), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = await response.get_json()
    assert error["error"] == "Malformed JSON body"
    assert error["detail"][0]["type"] == "json_invalid"


async def test_another_users_note_is_not_visible(client: Client, tokens: dict[str, str]) -> None:
    note = await create(client, tokens["alice"], title="alice's secret")
    bob = bearer(tokens["bob"])

    listed = await client.get("/notes", headers=bob)
    assert (await listed.get_json())["notes"] == []
    for call in (client.get, client.delete):
        response = await call(f"/notes/{note['id']}", headers=bob)
        assert response.status_code == 404, call
        assert await response.get_json() == NOTE_NOT_FOUND  # the same as a missing note

    still = await client.get(f"/notes/{note['id']}", headers=bearer(tokens["alice"]))
    assert still.status_code == 200 and (await still.get_json())["title"] == "alice's secret"


async def test_the_notes_migration_is_recorded_beside_royals(db: Database) -> None:
    """Applied once at start-up, recorded in Royal's schema_migration, invisible to
    ``royal db status`` (nothing pending) and a no-op when run again."""
    state = await status(db)
    assert state.pending == []
    assert 9001 in state.applied and 1 in state.applied
    assert await migrate_notes(db) == []


async def test_service_without_http(database: Database, password_hash: str) -> None:
    """The service is plain async functions over a Database: no app, no request."""
    alice = await users.insert_user(database, "alice", password_hash, "viewer")
    bob = await users.insert_user(database, "bob", password_hash, "viewer")
    first = await service.create_note(database, alice.id, "one", "")
    second = await service.create_note(database, alice.id, "two", "text")
    assert isinstance(first.id, int) and first.owner_id == alice.id
    assert [n.id for n in await service.select_notes(database, alice.id)] == [second.id, first.id]
    assert await service.select_notes(database, bob.id) == []
    assert await service.select_note(database, bob.id, first.id) is None
    assert not await service.delete_note(database, bob.id, first.id)
    assert await service.select_note(database, alice.id, first.id) == first
    assert await service.delete_note(database, alice.id, first.id)
    assert await service.select_note(database, alice.id, first.id) is None
    # A user's notes go with the user.
    await database.execute("DELETE FROM users WHERE id = :id", {"id": alice.id})
    assert await service.select_notes(database, alice.id) == []


@pytest.fixture(name="password_hash", scope="module")
def _password_hash() -> str:
    return Passwords(HashParameters(time_cost=2, memory_cost=19456, parallelism=1)).hash_sync(
        PASSWORD
    )


async def test_create_and_list_over_real_http(tmp_path: Path, password_hash: str) -> None:
    """``royal serve --app 'examples.notes.royal_notes:create_app()'`` in a real Hypercorn."""
    url = f"sqlite:///{tmp_path / 'live.sqlite3'}"
    server = LiveServer(
        {"ROYAL_DATABASE_URL": url},
        app="examples.notes.royal_notes:create_app()",
        cwd=REPO_ROOT,
    )
    try:
        await asyncio.to_thread(server.start)
        database = connect_database(url)
        async with database:  # the server migrated it: Royal's tables and the notes table
            await users.insert_user(database, "alice", password_hash, "viewer")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            login = await http.post("/auth/login", json={"username": "alice", "password": PASSWORD})
            assert login.status_code == 200, login.text
            headers = bearer(login.json()["access_token"])
            assert (await http.get("/notes")).status_code == 401

            created = await http.post(
                "/notes", json={"title": "over the wire", "content": "hi"}, headers=headers
            )
            assert created.status_code == 201, created.text
            assert created.headers["content-type"].startswith("application/json")
            listed = await http.get("/notes", headers=headers)
            assert listed.status_code == 200
            assert listed.json() == {"notes": [created.json()]}
            assert (await http.get("/healthz")).text == "ok"  # Royal's own routes are there too
    finally:
        await asyncio.to_thread(server.close)
