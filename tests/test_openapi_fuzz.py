"""Schemathesis against Royal's own OpenAPI document, in process, with every check.

Every documented operation is fuzzed twice, anonymously and with an admin's bearer token, by
every check schemathesis has: no 5xx, only documented statuses, content types and headers,
bodies that match their schema, invalid input refused, valid input accepted (``beyond_schema``
names the few rules a schema cannot state), and the auth and method checks. The SSE streams
never end by themselves, so the fuzz reads them for STREAM_SECONDS and checks what arrived;
``test_sse_*`` check their events against the document on streams with known content.

Run it alone with ``pytest tests/test_openapi_fuzz.py`` (about a minute on two cores).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from quart import Quart
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from royal import create_app
from royal.db import connect_database
from royal.services import tokens, users
from royal.streams.sse import ParsedEvent, SSEParser
from tests.conftest import bearer, seed_users

OVERRIDES = {
    "ENV": "testing",
    # An unexpected error is a JSON 500, as in production, not a debug page.
    "PROPAGATE_EXCEPTIONS": False,
    "AGENT_LOCAL_TOKEN_SECONDS": 0.0,  # agent replies without pauses between words
    # /readyz's documented 503 is a 5xx all the same: a busy CI machine must not provoke it.
    "READYZ_TIMEOUT_SECONDS": 30.0,
    # The fuzz logs in hundreds of times from one address; the limits have their own tests.
    "LOGIN_RATE_LIMIT_ACCOUNT": [100_000, 60],
    "LOGIN_RATE_LIMIT_CLIENT": [100_000, 60],
}
STREAM_SECONDS = 0.5  # how long the fuzz reads an SSE stream that does not end by itself
SSE_OPERATIONS = {("GET", "/streams/{topic}"), ("GET", "/agents/stream")}
# These two end the credentials they are called with, by design: each call gets a new token.
DESTROY_CREDENTIALS = {("POST", "/auth/logout"), ("POST", "/auth/password")}
# Rules a JSON Schema cannot state. A schema-valid request may break one, and Royal then
# answers 400 with its code (docs/api.md); any other 400 to valid input fails the fuzz.
DOMAIN_CODES = {
    "BAD_CURSOR": "a cursor this API did not give out",
    "BAD_TOPIC": "a topic name that is malformed or that nobody registered",
    "UNKNOWN_JOB_KIND": "a job kind nobody registered",
    "INVALID_SETTING": "a value outside the setting's own schema (the key is in the path)",
    "WEAK_PASSWORD": "a password from the common-passwords list",
}


class Served:
    """The ASGI app schemathesis calls: the ``royal`` fixture's app, with one lifespan.

    schemathesis's pytest plugin ends ASGI lifespans after every test item, and a Quart app's
    lifespan cannot run twice (its ``while_serving`` generators are made once), so this
    answers those itself, runs the app's startup once, and its shutdown in ``close``. Both run
    on schemathesis's event loop, where the requests run.
    """

    def __init__(self) -> None:
        self.app: Quart | None = None
        self.started = False
        self.closing = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert self.app is not None, "the royal fixture serves the app"
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            kind = (await receive())["type"]
            if kind == "lifespan.startup" and not self.started:
                self.started = True
                await self.app.startup()
            elif kind == "lifespan.shutdown" and self.closing:
                await self.app.shutdown()
            await send({"type": f"{kind}.complete"})
            if kind == "lifespan.shutdown":
                return

    def serve(self, app: Quart) -> None:
        self.app, self.started, self.closing = app, False, False
        with asgi.get_client(self):  # start it: connect and migrate
            pass

    def close(self) -> None:
        self.closing = True
        with asgi.get_client(self):
            pass
        asgi.shutdown_lifespans()
        self.app = None


# The document comes from an app that never serves, so collecting this module costs no I/O;
# test_served_document_is_the_fuzzed_one checks that the served one is the same.
DOCUMENT_APP = create_app({**OVERRIDES, "DATABASE_URL": "sqlite:///:memory:"})
DOCUMENT = DOCUMENT_APP.extensions["QUART_SCHEMA"].openapi_provider.schema()
SERVED = Served()
schema = schemathesis.openapi.from_dict(
    json.loads(json.dumps(DOCUMENT)), config=SchemathesisConfig.from_dict({"seed": 20261122})
)
schema.app = SERVED  # what schemathesis.openapi.from_asgi does, minus the request at import
FUZZ = settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class Royal:
    """The fuzzed app on its own SQLite file, and a real admin (tests/conftest.py's users)."""

    def __init__(self, database_url: str, password_hash: str) -> None:
        self.database_url = database_url
        SERVED.serve(create_app({**OVERRIDES, "DATABASE_URL": database_url}))
        self.admin = asyncio.run(seed_users(database_url, password_hash))["admin"]

    def fresh_token(self) -> str:
        async def issue() -> str:
            database = connect_database(self.database_url)
            async with database:
                admin = await users.select_user_by_name(database, "admin")
                assert admin is not None
                return (await tokens.issue_token(database, admin.id, "access", 3600)).token

        return asyncio.run(issue())


@pytest.fixture(name="royal", scope="module")
def _royal(tmp_path_factory: pytest.TempPathFactory, password_hash: str) -> Iterator[Royal]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'royal.sqlite3'}"
    yield Royal(url, password_hash)
    SERVED.close()


def beyond_schema(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """positive_data_acceptance, but a 400 that names one of DOMAIN_CODES, or that only a
    model's own validator raised (pydantic's ``value_error``: "must be in the future"), is a
    rule the schema cannot state, not a rejection of valid data."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except AssertionError:
        if response.status_code != 400:
            raise
        body = response.json()
        if body.get("code") in DOMAIN_CODES:
            return None
        if all(item.get("type") == "value_error" for item in body.get("detail") or [{}]):
            return None
        raise


def call(case: schemathesis.Case, token: str | None) -> Any:
    stream = (case.method.upper(), case.operation.path) in SSE_OPERATIONS
    return case.call_and_validate(
        headers=None if token is None else bearer(token),
        timeout=STREAM_SECONDS if stream else 10,
        excluded_checks=[positive_data_acceptance],
        additional_checks=[beyond_schema],
    )


@schema.parametrize()
@FUZZ
def test_fuzz_anonymous(case: schemathesis.Case, royal: Royal) -> None:
    call(case, None)


@schema.parametrize()
@FUZZ
def test_fuzz_admin(case: schemathesis.Case, royal: Royal) -> None:
    destroys = (case.method.upper(), case.operation.path) in DESTROY_CREDENTIALS
    call(case, royal.fresh_token() if destroys else royal.admin)


def test_served_document_is_the_fuzzed_one(royal: Royal) -> None:
    with asgi.get_client(SERVED) as client:
        served = client.get("/openapi.json").json()
    assert served == json.loads(json.dumps(DOCUMENT))


def read_stream(case: schemathesis.Case, token: str) -> tuple[list[ParsedEvent], SSEParser]:
    """Call a streaming operation with every check (its events against the document's schema);
    the events and the parser that read them."""
    response = call(case, token)
    assert response.status_code == 200, response.content
    parser = SSEParser()
    return parser.feed(response.content), parser


def test_sse_topic_stream_matches_the_document(royal: Royal) -> None:
    operation = schema["/streams/{topic}"]["GET"]
    with asgi.get_client(SERVED) as client:
        mark = client.post(
            "/streams/jobs", json={"event": "mark", "data": None}, headers=bearer(royal.admin)
        )
        created = client.post(
            "/api/alerts",
            json={"event_code": "TOR", "message": "Tornado warning", "severity": "severe"},
            headers=bearer(royal.admin),
        )
        published = client.post(
            "/streams/jobs",
            json={"event": "drill", "data": [1, "two"]},
            headers=bearer(royal.admin),
        )
    assert created.status_code == 201 and published.status_code == 201
    case = operation.Case(
        path_parameters={"topic": "alerts"},
        query={"topic": ["jobs"], "last_event_id": mark.json()["id"]},
    )
    events, parser = read_stream(case, royal.admin)
    assert parser.retry == 3000  # the first frame, before any event
    names = {event.event for event in events}
    assert {"alert.created", "drill"} <= names
    assert all(event.id is not None and event.id.isdigit() for event in events)

    # Resuming from an id this database never had: a `reset` event, checked against ResetData.
    case = operation.Case(
        path_parameters={"topic": "alerts"}, headers={"Last-Event-ID": "9000000000"}
    )
    events, _ = read_stream(case, royal.admin)
    assert events[0].event == "reset"
    assert json.loads(events[0].data)["reason"] == "unknown_id"


def test_sse_agent_stream_matches_the_document(royal: Royal) -> None:
    with asgi.get_client(SERVED) as client:
        session = client.post("/agents/session", headers=bearer(royal.admin)).json()["session_id"]
        sent = client.post(
            "/agents/message",
            json={"session_id": session, "role": "user", "content": "Any alerts?"},
            headers=bearer(royal.admin),
        ).json()
    case = schema["/agents/stream"]["GET"].Case(
        query={"session_id": session, "reply_id": sent["reply_id"]}
    )
    events, _ = read_stream(case, royal.admin)  # it ends by itself after `done`
    names = [event.event for event in events]
    assert names[-1] == "done" and set(names[:-1]) == {"message"}


def test_sse_routes_are_documented_with_their_events() -> None:
    def event_stream(path: str, method: str = "get") -> dict[str, Any]:
        response = DOCUMENT["paths"][path][method]["responses"]["200"]
        assert {"Cache-Control", "X-Accel-Buffering"} <= set(response["headers"])
        media: dict[str, Any] = response["content"]["text/event-stream"]
        return media["schema"]

    def names(event_schema: dict[str, Any]) -> set[str]:
        return {
            branch["properties"]["event"]["const"]
            for branch in event_schema["oneOf"]
            if "const" in branch["properties"]["event"]
        }

    topic = event_stream("/streams/{topic}")
    assert {"id", "event", "data", "retry"} <= set(topic["properties"])
    assert "Last-Event-ID" in topic["properties"]["id"]["description"]
    assert names(topic) == {"reset", "revoked"}  # and any other name, with any JSON
    agent = event_stream("/agents/stream")
    assert names(agent) == {"message", "done", "error", "reset", "revoked"}
    done = next(b for b in agent["oneOf"] if b["properties"]["event"].get("const") == "done")
    assert set(done["properties"]["data"]["contentSchema"]["properties"]) == {
        "message_id",
        "content",
        "usage",
        "finish_reason",
    }
    assert names(event_stream("/v1/chat/completions", "post")) == {"message"}
    parameters = {p["name"] for p in DOCUMENT["paths"]["/streams/{topic}"]["get"]["parameters"]}
    assert {"topic", "last_event_id", "last-event-id"} <= parameters


def test_no_two_models_share_a_component_name() -> None:
    """quart-schema names components after models: a second model of the same name would
    silently replace the first one's schema everywhere it is referenced."""
    provider = DOCUMENT_APP.extensions["QUART_SCHEMA"].openapi_provider
    seen: dict[str, Any] = {}
    for rule in provider.generate_rules():
        for name, component in provider.build_paths(rule)[1].items():
            assert seen.setdefault(name, component) == component, name
