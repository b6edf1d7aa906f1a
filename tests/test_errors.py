"""Every error leaves as JSON in the old Flask app's shape."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import BaseModel, Field
from quart import Blueprint, Quart
from quart.typing import TestClientProtocol as Client
from quart_schema import validate_request

from royal.auth import public
from royal.errors import APIError
from tests.conftest import bearer

probe = Blueprint("probe", __name__)


class Echo(BaseModel):
    name: str = Field(min_length=1, max_length=10)
    count: int


@probe.post("/probe/echo")
@public
@validate_request(Echo)
async def echo(data: Echo) -> dict[str, object]:
    """Echo a validated body."""
    return data.model_dump()


@probe.get("/probe/boom")
@public
async def boom() -> str:
    """Fail unexpectedly."""
    raise RuntimeError("secret internals")


@probe.get("/probe/teapot")
@public
async def teapot() -> str:
    """Fail on purpose with a domain code."""
    raise APIError(409, "ROOM_FULL", "The room is full")


@pytest.fixture(name="probe_client")
async def _probe_client(make_app: Callable[..., Quart]) -> AsyncIterator[Client]:
    app = make_app(MAX_CONTENT_LENGTH=64)
    app.register_blueprint(probe)
    async with app.test_app():
        yield app.test_client()


async def test_unknown_path_is_json_404(client: Client) -> None:
    response = await client.get("/no/such/thing")
    assert response.status_code == 404
    assert await response.get_json() == {"error": "Not Found", "status_code": 404}


async def test_wrong_method_is_json_405_with_allow(client: Client) -> None:
    response = await client.delete("/healthz")
    assert response.status_code == 405
    assert await response.get_json() == {"error": "Method Not Allowed", "status_code": 405}
    assert "GET" in response.headers["Allow"]


async def test_v1_paths_answer_other_methods_with_405(
    client: Client, tokens: dict[str, str]
) -> None:
    headers = bearer(tokens["viewer"])
    chat = await client.get("/v1/chat/completions", headers=headers)  # not /v1's unknown-URL 404
    assert chat.status_code == 405 and "POST" in chat.headers["Allow"]
    models = await client.options("/v1/models", headers=headers)
    assert {m.strip() for m in models.headers["Allow"].split(",")} == {"GET", "HEAD", "OPTIONS"}
    elsewhere = await client.get("/v1/files", headers=headers)
    assert elsewhere.status_code == 404
    assert (await elsewhere.get_json())["error"]["code"] == "unknown_url"


async def test_valid_body_passes(probe_client: Client) -> None:
    response = await probe_client.post("/probe/echo", json={"name": "a", "count": 2})
    assert response.status_code == 200
    assert await response.get_json() == {"name": "a", "count": 2}


async def test_validation_failure_names_each_bad_field(probe_client: Client) -> None:
    response = await probe_client.post("/probe/echo", json={"name": "", "count": "many"})
    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"] == "Bad Request"
    assert body["status_code"] == 400
    assert sorted(item["field"] for item in body["detail"]) == ["count", "name"]
    assert all(item["msg"] for item in body["detail"])


async def test_missing_field_is_named(probe_client: Client) -> None:
    response = await probe_client.post("/probe/echo", json={"name": "x"})
    body = await response.get_json()
    assert response.status_code == 400
    assert [item["field"] for item in body["detail"]] == ["count"]
    assert body["detail"][0]["type"] == "missing"


async def test_malformed_json_is_400_with_detail(probe_client: Client) -> None:
    response = await probe_client.post(
        "/probe/echo", data=b'{"name": "x",', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    body = await response.get_json()
    assert body["status_code"] == 400
    assert body["error"] == "Malformed JSON body"
    assert body["detail"][0]["type"] == "json_invalid"


async def test_a_body_that_is_not_utf8_is_malformed_json(probe_client: Client) -> None:
    response = await probe_client.post(
        "/probe/echo", data=b'{"name": "\xa6"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"] == "Malformed JSON body"
    assert body["detail"][0]["type"] == "json_invalid"


async def test_non_json_body_is_400(probe_client: Client) -> None:
    response = await probe_client.post("/probe/echo", form={"name": "x"})
    assert response.status_code == 400
    assert (await response.get_json())["detail"]


async def test_oversized_body_is_json_413(probe_client: Client) -> None:
    response = await probe_client.post("/probe/echo", json={"name": "x" * 200, "count": 1})
    assert response.status_code == 413
    assert await response.get_json() == {"error": "Request Entity Too Large", "status_code": 413}


async def test_domain_error_keeps_its_code(probe_client: Client) -> None:
    response = await probe_client.get("/probe/teapot")
    assert response.status_code == 409
    assert await response.get_json() == {
        "error": "The room is full",
        "status_code": 409,
        "code": "ROOM_FULL",
    }


async def test_500_hides_the_traceback_and_logs_the_request_id(
    probe_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await probe_client.get("/probe/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    body = await response.get_json()
    assert body == {"error": "Internal Server Error", "status_code": 500, "request_id": "req-42"}
    assert "secret internals" not in await response.get_data(as_text=True)
    assert response.headers["X-Request-ID"] == "req-42"
    logged = [r for r in caplog.records if "req-42" in r.getMessage()]
    assert logged and logged[0].exc_info is not None


async def test_request_id_is_generated_when_absent_or_unsafe(client: Client) -> None:
    generated = (await client.get("/healthz")).headers["X-Request-ID"]
    assert len(generated) == 32
    unsafe = await client.get("/healthz", headers={"X-Request-ID": "bad id <script>"})
    assert unsafe.headers["X-Request-ID"] != "bad id <script>"


async def test_openapi_documents_every_route_with_a_summary(client: Client, app: Quart) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    documented = {
        (path, method.upper())
        for path, operations in spec["paths"].items()
        for method in operations
    }
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "openapi", "swagger_ui", "redoc_ui", "scalar_ui"):
            continue
        if rule.websocket:  # OpenAPI has no WebSockets; docs/realtime.md describes /ws
            continue
        if rule.endpoint.startswith("dashboard."):  # pages for browsers (docs/dashboard.md)
            continue
        if rule.endpoint == "openai.unknown":  # /v1's fallback: OpenAI's 404 for other paths
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", str(rule))
            assert (path, method) in documented
    for operations in spec["paths"].values():
        for operation in operations.values():
            assert operation.get("summary"), operation


async def test_swagger_ui_is_served(client: Client) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in (await response.get_data(as_text=True)).lower()
