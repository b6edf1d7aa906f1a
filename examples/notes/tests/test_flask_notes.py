"""The Flask original, through Flask's test client: the same contract the port keeps.

Skipped when Flask is not installed (it is not a dependency of Royal; CI installs it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flask")

from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from examples.notes import flask_notes  # noqa: E402
from examples.notes.tests.conftest import bearer  # noqa: E402

NOTE_NOT_FOUND = {"error": "Not Found", "status_code": 404, "code": "NOTE_NOT_FOUND"}
UNAUTHENTICATED = {
    "error": "Authentication required",
    "status_code": 401,
    "code": "AUTHENTICATION_REQUIRED",
}


@pytest.fixture(name="flask_app")
def _flask_app(tmp_path: Path) -> Iterator[Flask]:
    app = flask_notes.create_app({"TESTING": True, "DATABASE": str(tmp_path / "notes.db")})
    with app.app_context():
        flask_notes.init_db()
    yield app


@pytest.fixture(name="flask_client")
def _flask_client(flask_app: Flask) -> FlaskClient:
    return flask_app.test_client()


@pytest.fixture(name="flask_tokens")
def _flask_tokens(flask_app: Flask) -> dict[str, str]:
    with flask_app.app_context():  # get_db() reaches for current_app and g
        return {name: flask_notes.create_user(name) for name in ("alice", "bob")}


def test_every_route_requires_a_user(
    flask_client: FlaskClient, flask_tokens: dict[str, str]
) -> None:
    for method, path in [("GET", "/notes"), ("POST", "/notes"), ("GET", "/notes/1")]:
        for headers in ({}, bearer("not-a-token")):
            response = flask_client.open(path, method=method, json={"title": "x"}, headers=headers)
            assert response.status_code == 401
            assert response.get_json() == UNAUTHENTICATED
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_create_list_get_delete(flask_client: FlaskClient, flask_tokens: dict[str, str]) -> None:
    alice = bearer(flask_tokens["alice"])
    response = flask_client.post(
        "/notes", json={"title": "  Groceries  ", "content": "eggs, milk"}, headers=alice
    )
    assert response.status_code == 201
    first: dict[str, Any] = response.get_json()
    assert first["title"] == "Groceries" and first["created_at"].endswith("Z")
    assert response.headers["Location"] == f"/notes/{first['id']}"
    second = flask_client.post("/notes", json={"title": "Call mum"}, headers=alice).get_json()
    assert second["content"] == ""

    listed = flask_client.get("/notes", headers=alice).get_json()
    assert [n["id"] for n in listed["notes"]] == [second["id"], first["id"]]
    assert flask_client.get(f"/notes/{first['id']}", headers=alice).get_json() == first

    deleted = flask_client.delete(f"/notes/{first['id']}", headers=alice)
    assert deleted.status_code == 204 and deleted.data == b""
    gone = flask_client.get(f"/notes/{first['id']}", headers=alice)
    assert gone.status_code == 404 and gone.get_json() == NOTE_NOT_FOUND


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "content": ["not", "text"]}, "content"),
        (["not", "an", "object"], "body"),
    ],
)
def test_invalid_notes_get_a_400_naming_the_field(
    flask_client: FlaskClient, flask_tokens: dict[str, str], body: Any, field: str
) -> None:
    alice = bearer(flask_tokens["alice"])
    response = flask_client.post("/notes", json=body, headers=alice)
    assert response.status_code == 400
    error = response.get_json()
    assert error["error"] == "Bad Request" and error["status_code"] == 400
    assert [problem["field"] for problem in error["detail"]] == [field]
    assert flask_client.get("/notes", headers=alice).get_json()["notes"] == []


def test_another_users_note_is_not_visible(
    flask_client: FlaskClient, flask_tokens: dict[str, str]
) -> None:
    alice, bob = bearer(flask_tokens["alice"]), bearer(flask_tokens["bob"])
    note = flask_client.post("/notes", json={"title": "secret"}, headers=alice).get_json()
    assert flask_client.get("/notes", headers=bob).get_json()["notes"] == []
    for method in ("GET", "DELETE"):
        response = flask_client.open(f"/notes/{note['id']}", method=method, headers=bob)
        assert response.status_code == 404 and response.get_json() == NOTE_NOT_FOUND
    assert flask_client.get(f"/notes/{note['id']}", headers=alice).status_code == 200


def test_unknown_routes_are_json_too(flask_client: FlaskClient) -> None:
    response = flask_client.get("/no/such/path")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Not Found", "status_code": 404}
