"""/agents through the test client: validation, ownership, listing, cancel, and the reply job.

Tests marked ``NO_WORKERS`` run on an app whose job workers are off, so a queued reply stays
``pending`` until the test acts on it; the others have workers and a fast local backend.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from royal.agents.backend import ChatMessage, Usage
from royal.agents.local import LocalBackend
from royal.db import Database
from royal.services import agents, alerts, jobs
from royal.streams import log
from tests.conftest import bearer

NO_WORKERS = pytest.mark.parametrize(
    "app", [{"JOB_WORKERS_ENABLED": False}], indirect=True, ids=["no-workers"]
)
MESSAGE_FIELDS = {
    "message_id",
    "session_id",
    "role",
    "content",
    "status",
    "reply_to",
    "usage",
    "error",
    "created_at",
    "updated_at",
}


@pytest.fixture(name="app")
async def _app(
    make_app: Callable[..., Quart], request: pytest.FixtureRequest
) -> AsyncIterator[Quart]:
    """Fast polling and a fast local backend; ``NO_WORKERS`` (indirect) adds overrides."""
    overrides = {
        "JOB_POLL_SECONDS": 0.05,
        "AGENT_LOCAL_TOKEN_SECONDS": 0.002,
        "AGENT_BATCH_SECONDS": 0.01,
        **getattr(request, "param", {}),
    }
    app = make_app(**overrides)
    async with app.test_app():
        yield app


async def new_session(client: Client, token: str, **body: Any) -> str:
    response = await client.post("/agents/session", headers=bearer(token), json=body)
    assert response.status_code == 201, await response.get_data()
    session_id: str = (await response.get_json())["session_id"]
    return session_id


async def post_message(
    client: Client, token: str, session_id: str, content: str, role: str = "user"
) -> dict[str, Any]:
    response = await client.post(
        "/agents/message",
        headers=bearer(token),
        json={"session_id": session_id, "role": role, "content": content},
    )
    assert response.status_code == 200, await response.get_data()
    body: dict[str, Any] = await response.get_json()
    return body


async def list_messages(client: Client, token: str, session_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/agents/sessions/{session_id}/messages", headers=bearer(token))
    assert response.status_code == 200, await response.get_data()
    items: list[dict[str, Any]] = (await response.get_json())["items"]
    return items


async def wait_for_message(
    client: Client, token: str, session_id: str, message_id: int, *statuses: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        (message,) = [
            m
            for m in await list_messages(client, token, session_id)
            if m["message_id"] == message_id
        ]
        if message["status"] in statuses:
            return message
        if time.monotonic() > deadline:
            raise AssertionError(f"message {message_id} stayed {message['status']}")
        await asyncio.sleep(0.02)


async def topic_events(db: Database, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    stored = await log.read_since(db, 0, topics=[agents.topic(session_id)])
    return [(event.event, orjson.loads(event.data)) for event in stored]


async def sse_open(client: Client, path: str, token: str) -> tuple[int, bytes]:
    """Open an SSE request, read its first frame (or its error body), hang up."""
    async with client.request(path, headers=bearer(token)) as connection:
        await connection.send_complete()
        first = await asyncio.wait_for(connection.receive(), 5)
        status = connection.status_code
        await connection.disconnect()
    assert status is not None
    return status, first


# POST /agents/session


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"json": {}}, {"json": {"title": "x"}}, {"json": {"title": "t" * 200}}],
    ids=["no-body", "empty-object", "title", "title-200"],
)
async def test_create_session(
    client: Client, db: Database, tokens: dict[str, str], kwargs: dict[str, Any]
) -> None:
    response = await client.post("/agents/session", headers=bearer(tokens["viewer"]), **kwargs)
    assert response.status_code == 201
    body = await response.get_json()
    assert list(body) == ["session_id"]
    assert uuid.UUID(body["session_id"]).version == 4
    assert str(uuid.UUID(body["session_id"])) == body["session_id"]
    title = await db.fetch_val(
        "SELECT title FROM agent_sessions WHERE id = :id", {"id": body["session_id"]}
    )
    assert title == kwargs.get("json", {}).get("title")


@pytest.mark.parametrize(
    ("title", "kind"), [("", "string_too_short"), ("t" * 201, "string_too_long")]
)
async def test_a_bad_title_is_400(
    client: Client, db: Database, tokens: dict[str, str], title: str, kind: str
) -> None:
    response = await client.post(
        "/agents/session", headers=bearer(tokens["viewer"]), json={"title": title}
    )
    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"] == "Bad Request" and body["status_code"] == 400
    assert [(d["field"], d["loc"], d["type"]) for d in body["detail"]] == [
        ("title", ["title"], kind)
    ]
    assert await db.fetch_val("SELECT count(*) FROM agent_sessions") == 0


@pytest.mark.parametrize("body", ["{not json", "[]", "0", '""'])
async def test_a_malformed_or_falsy_json_body_is_400(
    client: Client, db: Database, tokens: dict[str, str], body: str
) -> None:
    response = await client.post(
        "/agents/session",
        headers={**bearer(tokens["viewer"]), "Content-Type": "application/json"},
        data=body,
    )
    assert response.status_code == 400
    assert [d["field"] for d in (await response.get_json())["detail"]] == ["body"]
    assert await db.fetch_val("SELECT count(*) FROM agent_sessions") == 0


async def test_a_json_body_that_is_not_an_object_is_400(
    client: Client, tokens: dict[str, str]
) -> None:
    response = await client.post(
        "/agents/session", headers=bearer(tokens["viewer"]), json=["title"]
    )
    assert response.status_code == 400
    detail = (await response.get_json())["detail"]
    assert [(d["field"], d["type"]) for d in detail] == [("body", "model_type")]


# POST /agents/message: validation


def _body(session: str, **changes: Any) -> dict[str, Any]:
    """A message body; a change to None leaves that field out."""
    body = {"session_id": session, "role": "user", "content": "Any alerts?"} | changes
    return {key: value for key, value in body.items() if value is not None}


@pytest.mark.parametrize(
    ("changes", "field", "kind"),
    [
        ({"session_id": None}, "session_id", "missing"),
        ({"session_id": ""}, "session_id", "string_too_short"),
        ({"role": "system"}, "role", "literal_error"),
        ({"role": None}, "role", "missing"),
        ({"content": ""}, "content", "string_too_short"),
        ({"content": "x" * 4001}, "content", "string_too_long"),
        ({"content": None}, "content", "missing"),
    ],
    ids=[
        "no-session_id",
        "empty-session_id",
        "role-system",
        "no-role",
        "empty-content",
        "content-4001",
        "no-content",
    ],
)
async def test_a_bad_field_is_400_naming_it(
    client: Client,
    db: Database,
    tokens: dict[str, str],
    changes: dict[str, Any],
    field: str,
    kind: str,
) -> None:
    session_id = await new_session(client, tokens["viewer"])
    response = await client.post(
        "/agents/message", headers=bearer(tokens["viewer"]), json=_body(session_id, **changes)
    )
    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"] == "Bad Request" and body["status_code"] == 400 and "code" not in body
    assert [(d["field"], d["loc"], d["type"]) for d in body["detail"]] == [(field, [field], kind)]
    assert await list_messages(client, tokens["viewer"], session_id) == []
    assert await db.fetch_val("SELECT count(*) FROM jobs WHERE kind = 'agent.reply'") == 0


@pytest.mark.parametrize(
    ("data", "headers", "error", "kind"),
    [
        ("{nope", {"Content-Type": "application/json"}, "Malformed JSON body", "json_invalid"),
        ("", {"Content-Type": "application/json"}, "Malformed JSON body", "json_invalid"),
        ("", {}, "Bad Request", "model_type"),
    ],
    ids=["not-json", "empty-json-body", "no-body"],
)
async def test_a_body_that_is_not_a_json_object_is_400(
    client: Client,
    tokens: dict[str, str],
    data: str,
    headers: dict[str, str],
    error: str,
    kind: str,
) -> None:
    session_id = await new_session(client, tokens["viewer"])
    response = await client.post(
        "/agents/message", headers={**bearer(tokens["viewer"]), **headers}, data=data
    )
    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"] == error and body["status_code"] == 400
    assert [(d["field"], d["loc"], d["type"]) for d in body["detail"]] == [("body", [], kind)]
    assert await list_messages(client, tokens["viewer"], session_id) == []


@NO_WORKERS
async def test_content_of_4000_characters_is_accepted(
    client: Client, tokens: dict[str, str]
) -> None:
    session_id = await new_session(client, tokens["viewer"])
    posted = await post_message(client, tokens["viewer"], session_id, "x" * 4000)
    stored = await list_messages(client, tokens["viewer"], session_id)
    assert [m["message_id"] for m in stored] == [posted["reply_id"], posted["message_id"]]
    assert stored[1]["content"] == "x" * 4000


async def test_an_unknown_session_is_404(client: Client, tokens: dict[str, str]) -> None:
    unknown = str(uuid.uuid4())
    response = await client.post(
        "/agents/message", headers=bearer(tokens["viewer"]), json=_body(unknown)
    )
    assert response.status_code == 404
    assert await response.get_json() == {
        "error": f"No session {unknown!r}.",
        "status_code": 404,
        "code": "SESSION_NOT_FOUND",
    }


# POST /agents/message: what is stored and queued


@NO_WORKERS
async def test_a_user_message_queues_a_reply(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    token = tokens["viewer"]
    session_id = await new_session(client, token)
    response = await client.post(
        "/agents/message", headers=bearer(token), json=_body(session_id, content="Hi there")
    )
    assert response.status_code == 200
    body = await response.get_json()
    assert list(body) == ["status", "message_id", "reply_id"] and body["status"] == "received"
    assert isinstance(body["message_id"], int) and isinstance(body["reply_id"], int)
    assert body["reply_id"] > body["message_id"]

    reply, question = await list_messages(client, token, session_id)
    assert question["message_id"] == body["message_id"] and question["role"] == "user"
    assert question["content"] == "Hi there" and question["status"] == "complete"
    assert reply["message_id"] == body["reply_id"] and reply["role"] == "assistant"
    assert reply["status"] == "pending" and reply["reply_to"] == body["message_id"]
    assert reply["content"] == "" and reply["usage"] is None and reply["error"] is None

    listing = await client.get("/jobs?kind=agent.reply", headers=bearer(token))
    (job,) = (await listing.get_json())["items"]
    assert job["status"] == "queued" and job["payload"] == {"message_id": body["reply_id"]}
    assert job["max_attempts"] == agents.REPLY_MAX_ATTEMPTS


async def test_an_assistant_message_queues_nothing(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    token = tokens["viewer"]
    session_id = await new_session(client, token)
    body = await post_message(client, token, session_id, "Noted.", role="assistant")
    assert body == {"status": "received", "message_id": body["message_id"], "reply_id": None}
    listing = await client.get("/jobs?kind=agent.reply", headers=bearer(token))
    assert (await listing.get_json())["items"] == []
    assert await db.fetch_val("SELECT count(*) FROM jobs WHERE kind = 'agent.reply'") == 0
    (stored,) = await list_messages(client, token, session_id)
    assert stored["role"] == "assistant" and stored["status"] == "complete"
    assert stored["reply_to"] is None and stored["content"] == "Noted."


@NO_WORKERS
async def test_a_second_question_while_the_reply_is_pending_is_409(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    token = tokens["viewer"]
    session_id = await new_session(client, token)
    first = await post_message(client, token, session_id, "Any jobs?")
    response = await client.post(
        "/agents/message", headers=bearer(token), json=_body(session_id, content="Hello?")
    )
    assert response.status_code == 409
    assert await response.get_json() == {
        "error": f"Reply {first['reply_id']} is still being written; wait for it or cancel it.",
        "status_code": 409,
        "code": "REPLY_IN_PROGRESS",
    }
    assert len(await list_messages(client, token, session_id)) == 2
    assert await db.fetch_val("SELECT count(*) FROM jobs WHERE kind = 'agent.reply'") == 1


# Ownership: someone else's session does not exist for you


@NO_WORKERS
@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
async def test_someone_elses_session_is_not_found(
    client: Client, tokens: dict[str, str], role: str
) -> None:
    owner, intruder = tokens["other"], tokens[role]
    session_id = await new_session(client, owner)
    reply_id = (await post_message(client, owner, session_id, "Any alerts?"))["reply_id"]
    not_found = {
        "error": f"No session {session_id!r}.",
        "status_code": 404,
        "code": "SESSION_NOT_FOUND",
    }

    message = await client.post(
        "/agents/message", headers=bearer(intruder), json=_body(session_id, role="assistant")
    )
    listed = await client.get(f"/agents/sessions/{session_id}/messages", headers=bearer(intruder))
    cancel = await client.post(f"/agents/sessions/{session_id}/cancel", headers=bearer(intruder))
    for response in (message, listed, cancel):
        assert response.status_code == 404 and await response.get_json() == not_found
    status, body = await sse_open(client, f"/agents/stream?session_id={session_id}", intruder)
    assert status == 404 and orjson.loads(body) == not_found
    status, body = await sse_open(client, f"/streams/agent:{session_id}", intruder)
    assert status == 403 and orjson.loads(body)["code"] == "TOPIC_FORBIDDEN"
    publish = await client.post(
        f"/streams/agent:{session_id}", headers=bearer(intruder), json={"data": 1}
    )
    assert publish.status_code == 403
    sessions = await client.get("/agents/sessions", headers=bearer(intruder))
    assert session_id not in [s["session_id"] for s in (await sessions.get_json())["items"]]

    # The owner sees it all, and the intruder's cancel did not touch the reply.
    stored = await list_messages(client, owner, session_id)
    assert [(m["message_id"], m["status"]) for m in stored][0] == (reply_id, "pending")
    assert len(stored) == 2, "the intruder's message was not stored"
    status, body = await sse_open(
        client, f"/agents/stream?session_id={session_id}&reply_id={reply_id}", owner
    )
    assert status == 200 and body.startswith(b"retry: ")
    status, body = await sse_open(client, f"/streams/agent:{session_id}", owner)
    assert status == 200 and body.startswith(b"retry: ")
    owned = await client.post(f"/agents/sessions/{session_id}/cancel", headers=bearer(owner))
    assert owned.status_code == 202
    note = await client.post(
        "/agents/message", headers=bearer(owner), json=_body(session_id, role="assistant")
    )
    assert note.status_code == 200
    publish = await client.post(
        f"/streams/agent:{session_id}", headers=bearer(owner), json={"data": 1}
    )
    assert publish.status_code == 403  # only Royal publishes replies


async def test_no_one_may_publish_on_an_agent_topic(client: Client, tokens: dict[str, str]) -> None:
    session_id = await new_session(client, tokens["admin"])
    response = await client.post(
        f"/streams/agent:{session_id}", headers=bearer(tokens["admin"]), json={"data": 1}
    )
    assert response.status_code == 403
    assert (await response.get_json())["code"] == "TOPIC_FORBIDDEN"


# GET /agents/sessions


async def test_sessions_are_yours_newest_first_and_paged(
    client: Client, tokens: dict[str, str]
) -> None:
    mine = [await new_session(client, tokens["viewer"], title=f"s{n}") for n in range(5)]
    theirs = await new_session(client, tokens["other"])
    headers = bearer(tokens["viewer"])

    everything = await (await client.get("/agents/sessions", headers=headers)).get_json()
    assert [s["session_id"] for s in everything["items"]] == mine[::-1]
    assert everything["next_cursor"] is None
    first = everything["items"][0]
    assert set(first) == {"session_id", "title", "created_at", "updated_at"}
    assert first["title"] == "s4" and first["created_at"].endswith("Z")

    seen: list[str] = []
    pages = 0
    cursor = ""
    while True:
        page = await (
            await client.get(f"/agents/sessions?limit=2{cursor}", headers=headers)
        ).get_json()
        pages += 1
        seen += [s["session_id"] for s in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == mine[::-1] and pages == 3

    other = await (await client.get("/agents/sessions", headers=bearer(tokens["other"]))).get_json()
    assert [s["session_id"] for s in other["items"]] == [theirs]


@pytest.mark.parametrize("path", ["/agents/sessions", "/agents/sessions/{}/messages"])
async def test_a_bad_cursor_is_400(client: Client, tokens: dict[str, str], path: str) -> None:
    session_id = await new_session(client, tokens["viewer"])
    response = await client.get(
        path.format(session_id) + "?cursor=not-a-cursor", headers=bearer(tokens["viewer"])
    )
    assert response.status_code == 400
    assert await response.get_json() == {
        "error": "The cursor is not one this API gave out.",
        "status_code": 400,
        "code": "BAD_CURSOR",
    }


# GET /agents/sessions/<id>/messages


@NO_WORKERS
async def test_messages_newest_first_with_every_field_and_paged(
    client: Client, tokens: dict[str, str]
) -> None:
    token = tokens["viewer"]
    session_id = await new_session(client, token)
    notes = [
        (await post_message(client, token, session_id, f"note {n}", role="assistant"))["message_id"]
        for n in range(3)
    ]
    asked = await post_message(client, token, session_id, "Any alerts?")
    expected = [asked["reply_id"], asked["message_id"], *notes[::-1]]

    items = await list_messages(client, token, session_id)
    assert [m["message_id"] for m in items] == expected
    assert all(set(m) == MESSAGE_FIELDS for m in items)
    reply, question, newest_note = items[:3]
    stamps = ("created_at", "updated_at")
    assert {k: v for k, v in reply.items() if k not in stamps} == {
        "message_id": asked["reply_id"],
        "session_id": session_id,
        "role": "assistant",
        "content": "",
        "status": "pending",
        "reply_to": asked["message_id"],
        "usage": None,
        "error": None,
    }
    assert {k: v for k, v in question.items() if k not in stamps} == {
        "message_id": asked["message_id"],
        "session_id": session_id,
        "role": "user",
        "content": "Any alerts?",
        "status": "complete",
        "reply_to": None,
        "usage": None,
        "error": None,
    }
    assert newest_note["content"] == "note 2" and newest_note["role"] == "assistant"
    assert question["created_at"].endswith("Z") and question["created_at"] <= reply["created_at"]

    seen: list[int] = []
    cursor = ""
    while True:
        response = await client.get(
            f"/agents/sessions/{session_id}/messages?limit=2{cursor}", headers=bearer(token)
        )
        page = await response.get_json()
        assert len(page["items"]) <= 2
        seen += [m["message_id"] for m in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == expected


# POST /agents/sessions/<id>/cancel


async def test_cancel_with_no_reply_in_progress_is_409(
    client: Client, tokens: dict[str, str]
) -> None:
    session_id = await new_session(client, tokens["viewer"])
    response = await client.post(
        f"/agents/sessions/{session_id}/cancel", headers=bearer(tokens["viewer"])
    )
    assert response.status_code == 409
    assert await response.get_json() == {
        "error": "The session has no reply in progress.",
        "status_code": 409,
        "code": "NOTHING_TO_CANCEL",
    }


@NO_WORKERS
async def test_cancel_a_queued_reply(client: Client, db: Database, tokens: dict[str, str]) -> None:
    token = tokens["viewer"]
    session_id = await new_session(client, token)
    asked = await post_message(client, token, session_id, "Any alerts?")
    reply_id = asked["reply_id"]

    response = await client.post(f"/agents/sessions/{session_id}/cancel", headers=bearer(token))
    assert response.status_code == 202
    assert await response.get_json() == {"status": "cancelled", "message_id": reply_id}

    stored = (await list_messages(client, token, session_id))[0]
    assert stored["message_id"] == reply_id
    assert (stored["status"], stored["content"], stored["error"]) == ("cancelled", "", "cancelled")
    job_id = await db.fetch_val(
        "SELECT job_id FROM agent_messages WHERE id = :id", {"id": reply_id}
    )
    job = await jobs.select_job(db, job_id)
    assert job is not None and job.status == "cancelled"
    events = await topic_events(db, session_id)
    assert events[-1] == (
        "error",
        {
            "message_id": reply_id,
            "code": "cancelled",
            "error": "The reply was cancelled.",
            "content": "",
        },
    )
    assert [name for name, _ in events] == ["error"], "it never started: no deltas"

    again = await client.post(f"/agents/sessions/{session_id}/cancel", headers=bearer(token))
    assert again.status_code == 409 and (await again.get_json())["code"] == "NOTHING_TO_CANCEL"
    following = await post_message(client, token, session_id, "And now?")
    assert following["reply_id"] > reply_id


# The local backend against a real database


@NO_WORKERS
async def test_local_backend_with_no_alerts(db: Database) -> None:
    backend = LocalBackend(db, 0)
    assert await backend.answer("Any alerts?") == "There are no open alerts."


@NO_WORKERS
async def test_local_backend_lists_active_alerts(db: Database) -> None:
    await alerts.create_alert(
        db,
        event_code="TOR",
        message="Tornado warning until 18:00",
        severity="severe",
        areas=["048113"],
        expires_at=time.time() + 600,
    )
    await alerts.create_alert(
        db,
        event_code="SVR",
        message="Long gone",
        severity="moderate",
        areas=["048113"],
        expires_at=time.time() - 600,
    )
    answer = await LocalBackend(db, 0).answer("Are there any warnings?")
    assert answer == "Open alerts: TOR (severe): Tornado warning until 18:00."


@NO_WORKERS
async def test_local_backend_reports_the_queue(db: Database) -> None:
    backend = LocalBackend(db, 0)
    assert await backend.answer("How are the jobs?") == (
        "The job queue has 0 queued and 0 running jobs."
    )
    for n in range(2):
        await jobs.enqueue(db, "system.sleep", {"n": n})
    assert await backend.answer("What is in the queue?") == (
        "The job queue has 2 queued and 0 running jobs."
    )


@NO_WORKERS
async def test_local_backend_reports_the_status(db: Database) -> None:
    await jobs.enqueue(db, "system.sleep", {})
    answer = await LocalBackend(db, 0).answer("What is the system status?")
    assert answer == f"Royal is up on {db.dialect}, with 0 open alerts and 1 unfinished jobs."


@NO_WORKERS
async def test_local_backend_restates_what_it_cannot_answer(db: Database) -> None:
    answer = await LocalBackend(db, 0).answer("  What   is\nthe meaning of life?")
    assert answer == (
        "You asked: What is the meaning of life? I am Royal's built-in agent, so I can only "
        "tell you about open alerts, the job queue and the system's status."
    )


@NO_WORKERS
async def test_local_backend_streams_words_then_one_usage(db: Database) -> None:
    backend = LocalBackend(db, 0.001)
    conversation = [
        ChatMessage("user", "Hello"),
        ChatMessage("assistant", "Hi, how can I help?"),
        ChatMessage("user", "Any alerts?"),
    ]
    items = [item async for item in backend.stream(conversation)]
    *tokens, usage = items
    assert all(isinstance(token, str) and token for token in tokens)
    assert "".join(tokens) == await backend.answer("Any alerts?")  # the last user message
    assert tokens == ["There ", "are ", "no ", "open ", "alerts."]
    assert usage == Usage(prompt_tokens=1 + 5 + 2, completion_tokens=5)


# The reply job, end to end with this app's workers


async def test_a_reply_is_generated_streamed_and_stored(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    token = tokens["viewer"]
    session_id = await new_session(client, token)
    asked = await post_message(client, token, session_id, "Tell me about the weather please")
    reply_id = asked["reply_id"]
    stored = await wait_for_message(
        client, token, session_id, reply_id, "complete", "failed", "cancelled"
    )
    assert stored["status"] == "complete" and stored["error"] is None
    assert stored["content"].startswith("You asked: Tell me about the weather please I am")

    events = await topic_events(db, session_id)
    deltas = [data for name, data in events if name == "message"]
    assert [name for name, _ in events] == ["message"] * len(deltas) + ["done"]
    assert [d["index"] for d in deltas] == list(range(len(deltas)))
    assert {d["message_id"] for d in deltas} == {reply_id}
    assert "".join(d["delta"] for d in deltas) == stored["content"]
    done = events[-1][1]
    assert done == {
        "message_id": reply_id,
        "content": stored["content"],
        "usage": stored["usage"],
        "finish_reason": "stop",
    }
    words = len(stored["content"].split())
    assert stored["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": words,
        "total_tokens": 6 + words,
    }

    # The session is free again, and the next reply sees the conversation so far.
    again = await post_message(client, token, session_id, "Any alerts?")
    second = await wait_for_message(client, token, session_id, again["reply_id"], "complete")
    assert second["content"] == "There are no open alerts."
    prompt = 6 + words + 2
    assert second["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": 5,
        "total_tokens": prompt + 5,
    }


async def test_the_reply_job_runs_in_the_agents_lane_and_succeeds(
    client: Client, tokens: dict[str, str]
) -> None:
    token = tokens["viewer"]
    session_id = await new_session(client, token)
    asked = await post_message(client, token, session_id, "Any jobs?")
    stored = await wait_for_message(client, token, session_id, asked["reply_id"], "complete")

    deadline = time.monotonic() + 10
    while True:
        listing = await client.get("/jobs?kind=agent.reply", headers=bearer(token))
        (job,) = (await listing.get_json())["items"]
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert job["payload"] == {"message_id": asked["reply_id"]}
    assert job["result"] == {"outcome": "complete", "tokens": len(stored["content"].split())}
    assert job["last_error"] is None and job["finished_at"]
