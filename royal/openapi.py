"""Royal's OpenAPI document: quart-schema's, plus every answer an operation can really give.

quart-schema documents what its decorators declare (request, query and header models, success
responses). Royal's cross-cutting rules add answers to many operations, and this provider
documents them from the view itself, so the document cannot drift from the code:

- 401 (and the bearer, cookie and ticket security schemes) unless the view is ``@public``;
- 403 where ``roles_required`` names a role;
- 400 where a body, a query string or headers are validated, and 413 where a body is read;
- the error body of the area (Royal's ``{"error", "status_code"}``, or OpenAI's under /v1).

Handlers add what only they know: ``document_errors(404, 409)`` for their domain errors,
``document_event_stream(...)`` for a Server-Sent Events response (its event names, their data,
ids and retry), ``document_content(...)`` for a non-JSON body. All three only document; they
do not wrap the view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import document_request
from quart_schema.casing import snake_to_kebab
from quart_schema.openapi import OpenAPIProvider
from quart_schema.typing import Model
from quart_schema.validation import (
    QUART_SCHEMA_HEADERS_ATTRIBUTE,
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
)
from werkzeug.routing.converters import BaseConverter, IntegerConverter
from werkzeug.routing.rules import Rule

from royal.auth import is_public, required_role
from royal.errors import ErrorOut

T = TypeVar("T", bound=Callable[..., Any])

ERRORS_ATTRIBUTE = "_royal_openapi_errors"
CONTENT_ATTRIBUTE = "_royal_openapi_content"
ERROR_MODEL_ATTRIBUTE = "_royal_openapi_error_model"
OPTIONAL_BODY_ATTRIBUTE = "_royal_openapi_optional_body"

ERROR_DESCRIPTIONS = {
    400: "Invalid input: `detail` names each bad field, `code` a broken rule.",
    401: "No credentials, or invalid, expired or revoked ones (`AUTHENTICATION_REQUIRED`).",
    403: "The caller may not do this: `FORBIDDEN` (the role is too low), or the operation's "
    "own code (`TOPIC_FORBIDDEN`, `INVALID_CREDENTIALS`).",
    404: "No such resource.",
    409: "The resource is in a state that does not allow this.",
    413: "The request body is larger than `ROYAL_MAX_CONTENT_LENGTH`.",
    429: "Too many attempts; try again after `Retry-After` seconds.",
    502: "The agent's upstream model server failed.",
    503: "Not available yet (the event log is not reachable); retry after `Retry-After`.",
    504: "The agent's upstream model server did not answer in time.",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}}
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from `POST /auth/login`: `Authorization: Bearer <token>`.",
    },
    "cookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "royal_session",
        "description": "The dashboard's HttpOnly session (`__Host-royal_session` over TLS).",
    },
    "ticket": {
        "type": "apiKey",
        "in": "query",
        "name": "ticket",
        "description": "A single-use ticket from `POST /auth/ticket`; GET requests only.",
    },
}


def document_errors(*status_codes: int) -> Callable[[T], T]:
    """Document the error statuses a handler raises itself (404, 409, ...)."""

    def decorator(func: T) -> T:
        codes: set[int] = getattr(func, ERRORS_ATTRIBUTE, set())
        setattr(func, ERRORS_ATTRIBUTE, codes | set(status_codes))
        return func

    return decorator


def document_optional_body(model: type[BaseModel]) -> Callable[[T], T]:
    """Document a JSON body that a handler reads and validates itself, and that may be absent."""

    def decorator(func: T) -> T:
        setattr(func, OPTIONAL_BODY_ATTRIBUTE, True)
        return document_request(model)(func)

    return decorator


@dataclass(frozen=True)
class SSEEvent:
    """One kind of event an SSE endpoint sends: its name (None: any other name) and data."""

    name: str | None
    description: str
    data: type[BaseModel] | None = None  # None: any JSON value
    text: str | None = None  # data that is this text, not JSON (`[DONE]`)


@dataclass(frozen=True)
class Body:
    """A documented response body that is not a JSON model: its media type and schema, or
    (for ``text/event-stream``) the events it carries."""

    status_code: int
    media_type: str | None  # None: no body (204)
    description: str
    schema: Mapping[str, Any] | None = None
    events: tuple[SSEEvent, ...] = ()
    headers: Mapping[str, Any] = field(default_factory=dict)


def document_content(
    media_type: str,
    schema: Mapping[str, Any],
    *,
    status_code: int = 200,
    description: str = "",
    headers: Mapping[str, Any] | None = None,
) -> Callable[[T], T]:
    """Document a response body that is not a JSON model (plain text, say)."""
    return _document_body(
        Body(status_code, media_type, description, schema=schema, headers=headers or {})
    )


def document_empty(status_code: int, description: str) -> Callable[[T], T]:
    """Document a response without a body (204)."""
    return _document_body(Body(status_code, None, description))


SSE_HEADERS = {
    "Cache-Control": {"required": True, "schema": {"const": "no-cache"}},
    "X-Accel-Buffering": {
        "required": True,
        "description": "Tells nginx to pass each frame on at once.",
        "schema": {"const": "no"},
    },
}
SSE_FRAMES = (
    "A Server-Sent Events stream. It starts with `retry: <ms>` (the reconnection delay). Each "
    "event is `id:` (its id, the position to resume from: send it back as `Last-Event-ID`), "
    "`event:` (its name) and one `data:` line of JSON. An idle stream carries a `: ping` comment "
    "every 15 s. `reset` says the events before its id are gone (reload from the REST API); "
    "`revoked` ends the stream when the credentials are revoked; on shutdown the stream ends "
    "with `retry: 1000`. The schema describes one event as an EventSource parser reads it "
    "(what OpenAPI 3.2 calls `itemSchema`)."
)


def document_event_stream(
    *events: SSEEvent, description: str = SSE_FRAMES, status_code: int = 200
) -> Callable[[T], T]:
    """Document a ``text/event-stream`` response: its events, their data, ids and retry."""
    return _document_body(
        Body(status_code, "text/event-stream", description, events=events, headers=SSE_HEADERS)
    )


def _document_body(body: Body) -> Callable[[T], T]:
    def decorator(func: T) -> T:
        setattr(func, CONTENT_ATTRIBUTE, (*getattr(func, CONTENT_ATTRIBUTE, ()), body))
        return func

    return decorator


def error_model_blueprint(blueprint: Blueprint, model: type[BaseModel]) -> None:
    """The error body every operation of ``blueprint`` answers with (OpenAI's under /v1)."""
    setattr(blueprint, ERROR_MODEL_ATTRIBUTE, model)


class RoyalOpenAPIProvider(OpenAPIProvider):
    """quart-schema's provider, adding Royal's error answers, security and event streams."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        document["components"]["securitySchemes"] = SECURITY_SCHEMES
        return document

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        blueprint = self._app.blueprints.get(rule.endpoint.rpartition(".")[0])
        error_model = getattr(blueprint, ERROR_MODEL_ATTRIBUTE, ErrorOut)
        error_schema, definitions = self._schema_of(error_model)
        components.update(definitions)
        components[error_model.__name__] = error_schema
        error_ref = {"$ref": f"#/components/schemas/{error_model.__name__}"}

        extra: dict[int, dict[str, Any]] = {}
        for body in getattr(func, CONTENT_ATTRIBUTE, ()):
            extra[body.status_code] = _merge(
                extra.get(body.status_code), self._render_body(body, components)
            )
        errors = set(getattr(func, ERRORS_ATTRIBUTE, set()))
        has_body = getattr(func, QUART_SCHEMA_REQUEST_ATTRIBUTE, None) is not None
        if has_body or any(
            getattr(func, name, None) is not None
            for name in (QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, QUART_SCHEMA_HEADERS_ATTRIBUTE)
        ):
            errors.add(400)
        if has_body:
            errors.add(413)
        public = is_public(func)
        if not public:
            errors.add(401)
        if required_role(func) is not None:
            errors.add(403)

        for operation in (op for item in paths.values() for op in item.values()):
            # quart-schema shares one responses dict between the methods of a rule (copy it),
            # keyed by int status codes (JSON makes them strings: key them so here).
            responses = {str(code): response for code, response in operation["responses"].items()}
            for status_code, response in extra.items():
                responses[str(status_code)] = _merge(responses.get(str(status_code)), response)
            for status_code in sorted(errors):
                responses[str(status_code)] = self._error_response(status_code, error_ref)
            operation["responses"] = responses
            if "requestBody" in operation:
                operation["requestBody"] = self._request_body(operation["requestBody"], func)
            if not public:
                operation["security"] = [{name: []} for name in self._schemes(rule)]
        return paths, components

    def build_querystring_parameters(
        self, model: type[Model]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """quart-schema's parameters, marking the required ones (it reads ``required`` from
        each property, where JSON Schema never puts it)."""
        parameters, definitions = super().build_querystring_parameters(model)
        return _mark_required(parameters, model, lambda name: name), definitions

    def build_headers_parameters(
        self, model: type[Model]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        parameters, definitions = super().build_headers_parameters(model)
        return _mark_required(parameters, model, snake_to_kebab), definitions

    @staticmethod
    def _request_body(body: dict[str, Any], func: Callable[..., Any]) -> dict[str, Any]:
        """A validated body is required (without one: 400); an optional one may also be null."""
        if not getattr(func, OPTIONAL_BODY_ATTRIBUTE, False):
            return {**body, "required": True}
        content = {
            media_type: {**media, "schema": {"anyOf": [media["schema"], {"type": "null"}]}}
            for media_type, media in body["content"].items()
        }
        return {**body, "content": content, "required": False}

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        """quart-schema's parameter, with an integer's bounds (ids end at 2**63 - 1)."""
        parameter = super().build_path_parameter(name, converter)
        if isinstance(converter, IntegerConverter):
            low = converter.min if converter.min is not None or converter.signed else 0
            bounds = {"minimum": low, "maximum": converter.max}
            parameter["schema"].update({k: v for k, v in bounds.items() if v is not None})
        return parameter

    @staticmethod
    def _schemes(rule: Rule) -> Iterable[str]:
        yield from ("bearer", "cookie")
        if "GET" in (rule.methods or ()):
            yield "ticket"

    @staticmethod
    def _error_response(status_code: int, error_ref: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = {
            "description": ERROR_DESCRIPTIONS.get(status_code, HTTPStatus(status_code).phrase),
            "content": {"application/json": {"schema": error_ref}},
        }
        if status_code in (429, 503):
            response["headers"] = RETRY_AFTER
        elif status_code == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "description": '`Bearer realm="royal"`',
                    "schema": {"type": "string"},
                }
            }
        return response

    def _schema_of(self, model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A model's JSON Schema (as quart-schema writes response schemas), and its $defs."""
        response, definitions = self.build_response_object(model, None)
        schema: dict[str, Any] = response["content"]["application/json"]["schema"]
        return schema, definitions

    def _render_body(self, body: Body, components: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = {"description": body.description}
        if body.events:
            schema = self._event_schema(body.events, components)
        else:
            schema = dict(body.schema or {})
        if body.media_type is not None:
            response["content"] = {body.media_type: {"schema": schema}}
        if body.headers:
            response["headers"] = dict(body.headers)
        return response

    def _event_schema(
        self, events: tuple[SSEEvent, ...], components: dict[str, Any]
    ) -> dict[str, Any]:
        named = [event.name for event in events if event.name is not None]
        branches = []
        for event in events:
            data: dict[str, Any] = {"contentMediaType": "application/json"}
            if event.text is not None:
                data = {"const": event.text}
            elif event.data is not None:
                data_schema, definitions = self._schema_of(event.data)
                components.update(definitions)
                data["contentSchema"] = data_schema
            name = {"const": event.name} if event.name is not None else {"not": {"enum": named}}
            branches.append(
                {
                    "description": event.description,
                    "properties": {"event": name, "data": data},
                }
            )
        return {
            "type": "object",
            "description": "One event.",
            "required": ["event", "data"],
            "properties": {
                "event": {"type": "string", "description": "Its name (`event:`)."},
                "data": {"type": "string", "description": "Its data (`data:`), on one line."},
                "id": {
                    "type": "string",
                    "pattern": "^[0-9]{1,19}$",
                    "description": "Its id (`id:`), the resume position: reconnect with "
                    "`Last-Event-ID: <id>` to get exactly the events after it. Events of "
                    "ephemeral topics (`metrics`) have none.",
                },
                "retry": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Reconnection delay in milliseconds (`retry:`).",
                },
            },
            "oneOf": branches,
        }


def _mark_required(
    parameters: list[dict[str, Any]], model: type[Model], name_of: Callable[[str], str]
) -> list[dict[str, Any]]:
    fields = getattr(model, "model_fields", {})
    required = {name_of(name) for name, info in fields.items() if info.is_required()}
    return [{**p, "required": True} if p["name"] in required else p for p in parameters]


def _merge(documented: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any]:
    """A response documented by quart-schema (JSON) plus more media types for the same status."""
    if documented is None:
        return extra
    descriptions = (documented.get("description"), extra.get("description"))
    merged = {
        **documented,
        "description": "\n\n".join(text for text in descriptions if text),
        "content": {**documented.get("content", {}), **extra.get("content", {})},
    }
    # One status, several bodies: headers that only some of them carry are not required.
    only_some = {
        name: {**header, "required": False} for name, header in extra.get("headers", {}).items()
    }
    headers = {**documented.get("headers", {}), **only_some}
    if headers:
        merged["headers"] = headers
    return merged
