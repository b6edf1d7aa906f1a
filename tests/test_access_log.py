"""Royal's access logger: Hypercorn's atoms (credentials redacted, control characters escaped)
and JSON lines carrying the request id and the user Royal handled."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from hypercorn.config import Config as HypercornConfig
from hypercorn.logging import AccessLogAtoms
from quart import Quart
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from royal.access_log import (
    CLIENT_KEY,
    REQUEST_ID_KEY,
    STATUS_KEY,
    USER_ID_KEY,
    AccessLogger,
    JSONAccessLogger,
    LazyAtoms,
    escape,
    json_line,
    logger_class,
    redact_query,
)
from royal.config import ConfigError
from royal.services import tokens, users
from royal.testing import LiveServer
from tests.conftest import LiveRoyal

SCOPE: dict[str, Any] = {
    "type": "http",
    "http_version": "1.1",
    "method": "POST",
    "scheme": "https",
    "path": "/api/alerts",
    "query_string": b"limit=5",
    "client": ("10.0.0.7", 51234),
    "headers": [(b"user-agent", b"curl/8"), (b"referer", b"https://x/"), (b"x-tag", b"t1")],
}
RESPONSE: Any = {"status": 201, "headers": [(b"content-length", b"42"), (b"x-request-id", b"r1")]}
FORMAT = (
    '%(h)s %(l)s "%(r)s" "%(R)s" %(s)s %(st)s %(S)s %(m)s %(U)s %(Uq)s %(q)s %(H)s '
    '%(b)s %(B)s "%(f)s" "%(a)s" %(T)s %(D)s %(L)s %(p)s %({x-tag}i)s %({X-Request-ID}o)s '
    "%({missing}i)s %({royal_test_var}e)s %(nonsense)s"
)


@pytest.mark.parametrize("response", [RESPONSE, None])
def test_every_atom_as_hypercorn_writes_it(response: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROYAL_TEST_VAR", "set")
    ours = FORMAT % LazyAtoms(SCOPE, response, 0.0123)  # type: ignore[arg-type]
    theirs = FORMAT % AccessLogAtoms(SCOPE, response, 0.0123)  # type: ignore[arg-type]
    assert ours == theirs
    assert "10.0.0.7:51234" in ours and " set " in ours


def test_a_mapping_logging_accepts() -> None:
    atoms = LazyAtoms(SCOPE, RESPONSE, 0.5)  # type: ignore[arg-type]
    assert len(atoms) > 0 and "h" in atoms and atoms["s"] == "201"
    assert re.fullmatch(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", atoms["t"])


async def test_royal_serve_logs_requests_of_the_app_it_was_given() -> None:
    """``royal serve --app`` serves another factory (the benchmark's), with this logger."""
    server = await asyncio.to_thread(LiveServer(app="bench.peers.royal_app:create_app()").start)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            answer = await client.get("/json", headers={"User-Agent": "probe/1"})
            injected = await client.get("/json%0A127.0.0.1%20-%20fake%1b[2J")
        assert answer.json()["backend"] == "royal" and injected.status_code == 404
        deadline = time.monotonic() + 5
        while '"GET /json 1.1" 200' not in server.output() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        line = next(x for x in server.output().splitlines() if '"GET /json 1.1"' in x)
        assert re.search(r'\] 127\.0\.0\.1:\d+ - "GET /json 1\.1" 200 45 \d+us "probe/1"$', line)
        while "404" not in server.output() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert '"GET /json\\x0a127.0.0.1 - fake\\x1b[2J 1.1" 404' in server.output()
        assert not [x for x in server.output().splitlines() if x.startswith("127.0.0.1 - fake")]
    finally:
        await asyncio.to_thread(server.close)


# --- Redaction and escaping (both formats) -----------------------------------------------------

DEFAULT_FORMAT = tomllib.loads(Path("hypercorn.toml").read_text())["access_log_format"]
SECRETS = ["t1cket-value", "b3arer-token", "api-k3y", "pa55word"]
SECRET_QUERY = (
    b"ticket=t1cket-value&last_event_id=7&access_token=b3arer-token&Tick%65t=t1cket-value"
    b"&api_key=api-k3y&password=pa55word&topic=alerts&ticket="
)
REDACTED_QUERY = (
    "ticket=[redacted]&last_event_id=7&access_token=[redacted]&Tick%65t=[redacted]"
    "&api_key=[redacted]&password=[redacted]&topic=alerts&ticket="
)
# A path decoded from %0a%0d%1b..., and a user agent with an escape sequence and a fake line.
EVIL_PATH = '/x\n127.0.0.1 - "GET /admin 1.1" 200\r\x1b[2J\x00\x7f\x85\x9b\u2028\u2029\u202e"\\'
EVIL_AGENT = 'ua\x1b]0;owned\x07\x85\x9b"\\ 200'
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202e]")


def scope(**changes: Any) -> Any:
    return {**SCOPE, **changes}


def test_the_default_format_is_unchanged_for_ordinary_requests() -> None:
    ordinary = scope(method="GET", query_string=b"ticket=abc&last_event_id=3")
    assert DEFAULT_FORMAT % LazyAtoms(ordinary, RESPONSE, 0.25) == (
        '10.0.0.7:51234 - "GET /api/alerts 1.1" 201 42 250000us "curl/8"'
    )


@pytest.mark.parametrize("atom", ["R", "Uq", "q"])
def test_text_atoms_redact_credentials_in_the_query(atom: str) -> None:
    line = f"%({atom})s" % LazyAtoms(scope(query_string=SECRET_QUERY), RESPONSE, 0.1)
    assert REDACTED_QUERY in line
    assert not any(secret in line for secret in SECRETS)


def test_text_atoms_redact_credential_headers_and_referer_queries() -> None:
    headers = [
        (b"authorization", b"Bearer b3arer-token"),
        (b"cookie", b"royal_session=b3arer-token"),
        (b"referer", b"https://x/page?ticket=t1cket-value&a=1"),
    ]
    response = {"status": 200, "headers": [(b"set-cookie", b"royal_session=b3arer-token")]}
    atoms = LazyAtoms(scope(headers=headers), response, 0.1)  # type: ignore[arg-type]
    fmt = "%({authorization}i)s %({Cookie}i)s %({set-cookie}o)s %(f)s %({missing}i)s"
    line = fmt % atoms
    assert line == "[redacted] [redacted] [redacted] https://x/page?ticket=[redacted]&a=1 -"


@pytest.mark.parametrize(
    "fmt", [DEFAULT_FORMAT, '"%(r)s" "%(R)s" %(U)s %(Uq)s %(m)s "%(a)s" "%({user-agent}i)s"']
)
def test_text_lines_escape_control_characters(fmt: str) -> None:
    evil = scope(path=EVIL_PATH, headers=[(b"user-agent", EVIL_AGENT.encode("latin1"))])
    line = fmt % LazyAtoms(evil, RESPONSE, 0.1)
    assert not CONTROL.search(line), line
    assert len(line.splitlines()) == 1
    assert '/x\\x0a127.0.0.1 - \\"GET /admin 1.1\\" 200\\x0d\\x1b[2J\\x00\\x7f' in line
    assert '\\x85\\x9b\\u2028\\u2029\\u202e\\"\\\\' in line
    assert 'ua\\x1b]0;owned\\x07\\x85\\x9b\\"\\\\ 200' in line


def test_escape_leaves_printable_text_alone() -> None:
    assert escape("/api/alerts?a=1 é ✓") == "/api/alerts?a=1 é ✓"
    assert escape('a"b\\c\td') == 'a\\"b\\\\c\\x09d'


def test_redact_query() -> None:
    assert redact_query("") == ""
    assert redact_query("session_id=abc&last_event_id=4&topic=a") == (
        "session_id=abc&last_event_id=4&topic=a"
    )
    assert redact_query("TICKET=x&refresh_token=y&client_secret=z&key=k&x+token=t") == (
        "TICKET=[redacted]&refresh_token=[redacted]&client_secret=[redacted]&key=[redacted]"
        "&x+token=[redacted]"
    )


# --- JSON lines ---------------------------------------------------------------------------------


def test_json_line_fields() -> None:
    request = scope(
        method="GET",
        query_string=SECRET_QUERY,
        **{REQUEST_ID_KEY: "rid-1", USER_ID_KEY: 42, CLIENT_KEY: "203.0.113.9"},
    )
    line = json_line(request, RESPONSE, 0.0123456)
    record = json.loads(line)
    assert record == {
        "time": record["time"],
        "type": "http",
        "method": "GET",
        "path": "/api/alerts",
        "query": REDACTED_QUERY,
        "status": 201,
        "bytes": 42,
        "duration_ms": 12.346,
        "client": "203.0.113.9",
        "request_id": "rid-1",
        "user_id": 42,
        "user_agent": "curl/8",
        "protocol": "1.1",
    }
    written = datetime.fromisoformat(record["time"])
    assert written.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - written).total_seconds()) < 5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    assert not any(secret in line for secret in SECRETS)


def test_json_line_without_royal_hooks_or_response() -> None:
    """Another app (or a request Hypercorn refused itself): the socket peer, nulls, and the
    request id from the response header when the scope has none."""
    bare = scope(query_string=b"", headers=[])
    record = json.loads(json_line(bare, RESPONSE, 0.5))
    assert record["client"] == "10.0.0.7" and record["request_id"] == "r1"
    assert record["user_id"] is None and record["user_agent"] is None and record["query"] is None
    gone = json.loads(json_line(bare, None, 0.5))
    assert gone["status"] is None and gone["bytes"] is None and gone["request_id"] is None
    # A stream whose client hung up: Hypercorn passes no response, the app noted the status.
    stream = json.loads(json_line(scope(**{STATUS_KEY: 200}), None, 30.0))
    assert stream["status"] == 200 and stream["duration_ms"] == 30000.0


def test_json_line_of_a_websocket_handshake() -> None:
    handshake = {
        "type": "websocket",
        "http_version": "1.1",
        "scheme": "ws",
        "path": "/ws",
        "query_string": b"ticket=t1cket-value",
        "client": ("10.0.0.8", 4000),
        "headers": [],
        USER_ID_KEY: 3,
        REQUEST_ID_KEY: "ws-1",
    }
    record = json.loads(json_line(handshake, {"status": 101, "headers": []}, 0.002))  # type: ignore[arg-type]
    assert record["type"] == "websocket" and record["method"] == "GET"
    assert record["status"] == 101 and record["query"] == "ticket=[redacted]"
    assert record["user_id"] == 3 and record["request_id"] == "ws-1"


def test_json_lines_escape_control_characters() -> None:
    evil = scope(path=EVIL_PATH, headers=[(b"user-agent", EVIL_AGENT.encode("latin1"))])
    line = json_line(evil, RESPONSE, 0.1)
    assert not CONTROL.search(line), line
    assert len(line.splitlines()) == 1
    assert "\\u0085\\u009b\\u2028\\u2029\\u202e" in line and "\\u001b" in line
    record = json.loads(line)  # escaped, not lost
    assert record["path"] == EVIL_PATH and record["user_agent"] == EVIL_AGENT


def test_logger_class_by_name() -> None:
    assert logger_class("text") is AccessLogger
    assert logger_class("JSON") is JSONAccessLogger
    with pytest.raises(ConfigError, match="ROYAL_ACCESS_LOG_FORMAT"):
        logger_class("yaml")


def test_royal_serve_refuses_an_unknown_format(sqlite_url: str) -> None:
    env = {"ROYAL_ENV": "testing", "ROYAL_DATABASE_URL": sqlite_url}
    result = subprocess.run(
        [sys.executable, "-m", "royal", "serve", "--bind", "127.0.0.1:0"],
        env={**os.environ, **env, "ROYAL_ACCESS_LOG_FORMAT": "yaml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "ROYAL_ACCESS_LOG_FORMAT='yaml': use one of text, json." in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(name="hypercorn_loggers")
def _hypercorn_loggers() -> Iterator[None]:
    """Hypercorn's loggers are global: put back what a test's Logger changed."""
    loggers = [logging.getLogger(name) for name in ("hypercorn.access", "hypercorn.error")]
    saved = [(lg.handlers, lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        lg.handlers, lg.level, lg.propagate = handlers, level, propagate


@pytest.mark.usefixtures("hypercorn_loggers")
async def test_json_logger_writes_bare_lines(capsys: pytest.CaptureFixture[str]) -> None:
    config = HypercornConfig()
    config.accesslog = "-"
    logger = JSONAccessLogger(config)
    await logger.access(scope(), RESPONSE, 0.1)
    await logger.access(scope(path="/a\nb"), None, 0.1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["path"] for line in lines] == ["/api/alerts", "/a\nb"]


@pytest.mark.usefixtures("hypercorn_loggers")
async def test_json_logger_does_nothing_when_the_access_log_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(*args: Any) -> str:
        raise AssertionError("formatted a line nobody reads")

    monkeypatch.setattr("royal.access_log.json_line", fail)
    config = HypercornConfig()
    config.accesslog = None  # Hypercorn's default
    await JSONAccessLogger(config).access(scope(), RESPONSE, 0.1)
    config.accesslog = "-"
    config.loglevel = "WARNING"
    await JSONAccessLogger(config).access(scope(), RESPONSE, 0.1)


# --- What Royal's hooks leave in the scope -------------------------------------------------------


async def asgi_get(app: Quart, target: str, headers: list[tuple[bytes, bytes]]) -> Any:
    """One GET straight through the app's ASGI interface, as Hypercorn calls it."""
    path, _, query = target.partition("?")
    request: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"royal.test"), *headers],
        "client": ("10.0.0.1", 4321),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
        "state": {},
    }
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(request, receive, send)  # type: ignore[arg-type]
    return request, sent[0]


async def test_hooks_leave_request_id_user_and_client_in_the_scope(
    make_app: Callable[..., Quart], password_hash: str
) -> None:
    app = make_app(TRUSTED_PROXIES=["10.0.0.1"])
    async with app.test_app():
        db = app.extensions["royal.db"]
        user = await users.insert_user(db, "watcher", password_hash, "viewer")
        access = await tokens.issue_token(db, user.id, "access", 3600)
        token = access.token
        ticket = (
            await tokens.issue_token(db, user.id, "ticket", 30, parent_id=access.token_id)
        ).token
        forwarded = (b"x-forwarded-for", b"198.51.100.4")
        request, start = await asgi_get(
            app,
            "/auth/me",
            [
                (b"authorization", f"Bearer {token}".encode()),
                (b"x-request-id", b"rid-me"),
                forwarded,
            ],
        )
        assert start["status"] == 200
        me = json.loads(json_line(request, start, 0.001))
        assert me["request_id"] == "rid-me" and me["user_id"] == user.id
        assert me["client"] == "198.51.100.4"

        request, start = await asgi_get(app, f"/auth/me?ticket={ticket}", [forwarded])
        line = json_line(request, None, 0.001)  # as if the client hung up
        by_ticket = json.loads(line)
        assert by_ticket["status"] == 200 and by_ticket["user_id"] == user.id
        assert by_ticket["query"] == "ticket=[redacted]" and ticket not in line
        assert by_ticket["request_id"] == dict(start["headers"])[b"x-request-id"].decode()

        request, start = await asgi_get(app, "/no%0Asuch", [(b"x-request-id", b"rid-404")])
        missing = json.loads(json_line(request, start, 0.001))
        assert missing["status"] == 404 and missing["path"] == "/no\nsuch"
        assert missing["user_id"] is None and missing["client"] == "10.0.0.1"


# --- Over a real socket -------------------------------------------------------------------------


async def test_json_access_log_over_real_sockets(
    live_royal: Callable[..., Awaitable[LiveRoyal]],
) -> None:
    live = await live_royal(
        env={"ROYAL_ACCESS_LOG_FORMAT": "json", "ROYAL_TRUSTED_PROXIES": '["127.0.0.1"]'}
    )
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    secrets = list(live.tokens.values())
    async with httpx.AsyncClient(base_url=live.url, timeout=10, headers=forwarded) as http:
        ids = {
            role: (await http.get("/auth/me", headers=live.headers(role))).json()["id"]
            for role in ("viewer", "operator")
        }

        async def ticket() -> str:
            answer = await http.post("/auth/ticket", headers=live.headers("operator"))
            issued: str = answer.json()["ticket"]
            secrets.append(issued)
            return issued

        me = await http.get(
            "/auth/me", headers={**live.headers("viewer"), "X-Request-ID": "live-me"}
        )
        assert me.status_code == 200
        by_ticket = await http.get(
            f"/auth/me?ticket={await ticket()}&last_event_id=5",
            headers={"X-Request-ID": "live-ticket", "User-Agent": "probe/2"},
        )
        assert by_ticket.status_code == 200
        # A long-lived token in the URL is refused, and never written down.
        in_url = await http.get(
            f"/auth/me?access_token={live.tokens['admin']}",
            headers={"X-Request-ID": "live-in-url"},
        )
        assert in_url.status_code == 401
        fake = await http.get(
            "/no%0A127.0.0.1%20-%20%22GET%20/admin%22%20200%1b[2J",
            headers={**live.headers("viewer"), "X-Request-ID": "live-ctl"},
        )
        assert fake.status_code == 404
        # An SSE stream is logged when it ends: here the client hangs up after the first bytes.
        stream_url = f"/streams/alerts?ticket={await ticket()}"
        sse_headers = {"X-Request-ID": "live-sse", "Accept": "text/event-stream"}
        async with http.stream("GET", stream_url, headers=sse_headers) as stream:
            assert stream.status_code == 200
            await anext(stream.aiter_bytes())
        ws_ticket = await ticket()
    # A WebSocket handshake is logged when it is accepted.
    async with ws_connect(
        f"{live.ws_url}?ticket={ws_ticket}",
        additional_headers={"X-Request-ID": "live-ws", **forwarded},
    ) as socket:
        await socket.send(json.dumps({"type": "ping"}))
        await asyncio.wait_for(socket.recv(), 10)
    with pytest.raises(InvalidStatus):  # no credentials: refused before the handshake
        await ws_connect(
            live.ws_url, additional_headers={"X-Request-ID": "live-ws-401", **forwarded}
        )

    expected = {
        "live-me": ("GET", "/auth/me", None, 200, ids["viewer"]),
        "live-ticket": (
            "GET",
            "/auth/me",
            "ticket=[redacted]&last_event_id=5",
            200,
            ids["operator"],
        ),
        "live-in-url": ("GET", "/auth/me", "access_token=[redacted]", 401, None),
        "live-ctl": ("GET", '/no\n127.0.0.1 - "GET /admin" 200\x1b[2J', None, 404, ids["viewer"]),
        "live-sse": ("GET", "/streams/alerts", "ticket=[redacted]", 200, ids["operator"]),
        "live-ws": ("GET", "/ws", "ticket=[redacted]", 101, ids["operator"]),
        "live-ws-401": ("GET", "/ws", None, 401, None),
    }
    lines = await logged(live.server, [*expected])
    for request_id, (method, path, query, status, user_id) in expected.items():
        record = lines[request_id]
        assert (record["method"], record["path"], record["query"]) == (method, path, query)
        assert (record["status"], record["user_id"]) == (status, user_id), record
        assert record["client"] == "203.0.113.9"
        assert record["duration_ms"] >= 0
    assert lines["live-ticket"]["user_agent"] == "probe/2"
    assert lines["live-ws"]["type"] == "websocket"
    assert isinstance(lines["live-me"]["bytes"], int) and lines["live-sse"]["bytes"] is None
    output = live.server.output()
    assert not [secret for secret in secrets if secret in output]
    assert "Authorization" not in output and "Bearer" not in output
    assert not [line for line in output.splitlines() if line.startswith("127.0.0.1 - ")]


async def logged(server: LiveServer, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The access-log record of each request id, once all are written; each must be exactly
    one line of the server's output, and that line one JSON object."""
    deadline = time.monotonic() + 10
    while True:
        lines = server.output().splitlines()
        found = {rid: [line for line in lines if f'"{rid}"' in line] for rid in request_ids}
        if all(found.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    records = {}
    for rid, matches in found.items():
        assert len(matches) == 1, (rid, matches, server.output())
        record = json.loads(matches[0])
        assert record["request_id"] == rid
        records[rid] = record
    return records
