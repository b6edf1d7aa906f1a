"""Every error leaves Royal as JSON in the old Flask app's shape.

``{"error": "Not Found", "status_code": 404}``, plus ``detail`` (a list naming each bad field)
for validation failures and malformed JSON, plus ``code`` for domain errors. A 500 never shows
a traceback; it is logged with the request id that the client also receives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema
from quart import (
    Quart,
    Request,
    Response,
    g,
    has_request_context,
    has_websocket_context,
    jsonify,
    request,
    websocket,
)
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import BadRequest, HTTPException

from royal.db.availability import RETRY_AFTER_SECONDS, is_unavailable


class APIError(Exception):
    """An error a handler or an error mapping raises on purpose: status, code and message."""

    def __init__(
        self,
        status_code: int,
        code: str | None = None,
        message: str | None = None,
        *,
        detail: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or code or HTTPStatus(status_code).phrase)
        self.status_code = status_code
        self.code = code
        self.message = message or HTTPStatus(status_code).phrase
        self.detail = detail
        self.headers = dict(headers or {})


class MalformedJSON(BadRequest):
    """The body claimed to be JSON and was not."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"Malformed JSON body: {error}")
        self.error = error


class JSONRequest(Request):
    """Quart's Request, raising a descriptive 400 for a body that is not valid JSON."""

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        try:
            return await super().get_json(force=force, silent=silent, cache=cache)
        except UnicodeDecodeError as error:  # Quart decodes before parsing; JSON is UTF-8
            if silent:
                return None
            raise MalformedJSON(error) from None

    def on_json_loading_failed(self, error: Exception) -> Any:
        raise MalformedJSON(error)


class ErrorDetail(BaseModel):
    field: str = Field(description="The bad field, dotted when nested (`areas.0`), or `body`.")
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Royal's error body, the same for every status (the old Flask app's shape)."""

    error: str = Field(description="What went wrong, for people.")
    status_code: int
    code: str | SkipJsonSchema[None] = Field(
        None, description="What went wrong, for programs: `ALERT_NOT_FOUND`, `BAD_CURSOR`, ..."
    )
    detail: list[ErrorDetail] | SkipJsonSchema[None] = Field(
        None, description="Validation failures: one entry per bad field."
    )


def error_body(
    status_code: int,
    message: str | None = None,
    *,
    code: str | None = None,
    detail: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": message or HTTPStatus(status_code).phrase,
        "status_code": status_code,
    }
    if code is not None:
        body["code"] = code
    if detail is not None:
        body["detail"] = detail
    return body


def error_response(
    status_code: int,
    message: str | None = None,
    *,
    code: str | None = None,
    detail: list[dict[str, Any]] | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    response = jsonify(error_body(status_code, message, code=code, detail=detail))
    response.status_code = status_code
    for name, value in headers:
        response.headers[name] = value
    return response


def validation_detail(error: Exception) -> list[dict[str, Any]]:
    """One entry per bad field: where it is (``loc``/``field``), what is wrong, and its type."""
    if isinstance(error, ValidationError):
        return [
            {
                "field": ".".join(str(part) for part in item["loc"]) or "body",
                "loc": list(item["loc"]),
                "msg": item["msg"],
                "type": item["type"],
            }
            for item in error.errors(include_url=False, include_context=False, include_input=False)
        ]
    return [{"field": "body", "loc": [], "msg": str(error), "type": type(error).__name__}]


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(APIError)
    async def _api_error(error: APIError) -> Response:
        return error_response(
            error.status_code,
            error.message,
            code=error.code,
            detail=error.detail,
            headers=error.headers.items(),
        )

    @app.errorhandler(RequestSchemaValidationError)
    async def _invalid_request(error: RequestSchemaValidationError) -> Response:
        return error_response(400, detail=validation_detail(error.validation_error))

    @app.errorhandler(MalformedJSON)
    async def _malformed_json(error: MalformedJSON) -> Response:
        detail = [{"field": "body", "loc": [], "msg": str(error.error), "type": "json_invalid"}]
        return error_response(400, "Malformed JSON body", detail=detail)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        # Keep protocol headers such as Allow (405) and Retry-After (429, 503).
        headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
        return error_response(status, HTTPStatus(status).phrase, headers=headers)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        request_id = getattr(g, "request_id", None)
        method, path = (request.method, request.path) if has_request_context() else ("WS", "")
        if has_websocket_context():
            path = websocket.path
        if is_unavailable(error):
            # An outage, not a bug: the client may retry; nothing was changed.
            app.logger.warning(
                "Database unavailable on %s %s (request id %s): %r", method, path, request_id, error
            )
            return error_response(
                503,
                "Database unavailable, retry shortly",
                code="database_unavailable",
                headers=[("Retry-After", str(RETRY_AFTER_SECONDS))],
            )
        app.logger.error(
            "Unhandled error on %s %s (request id %s)", method, path, request_id, exc_info=error
        )
        body = error_body(500)
        body["request_id"] = request_id
        response = jsonify(body)
        response.status_code = 500
        return response
