"""Royal's agents in the OpenAI format: `POST /v1/chat/completions` and `GET /v1/models`.

LLM client libraries (the official `openai` SDK, LangChain, ...) point their base URL at
`https://royal.example/v1` and use a Royal token as the API key. Each completion is a new agent
session holding the request's messages; the reply is the same durable `agent.reply` job as on
`/agents`, translated into `chat.completion.chunk` frames ending with `data: [DONE]`, or into
one `chat.completion`. Errors have OpenAI's shape, `{"error": {"message", "type", "param",
"code"}}`, so the SDKs raise their usual exceptions.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from quart import Blueprint, Response, current_app, jsonify
from quart.blueprints import BlueprintSetupState
from quart_schema import RequestSchemaValidationError, document_response, hide, validate_request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter

from royal.agents import get_agents
from royal.auth import current_identity, login_required
from royal.blueprints.live import require_streams_ready
from royal.db import get_db
from royal.errors import APIError, MalformedJSON, validation_detail
from royal.json_provider import dumps_bytes
from royal.openapi import SSEEvent, document_errors, document_event_stream, error_model_blueprint
from royal.services import agents
from royal.streams import sse
from royal.streams.extension import get_broker
from royal.streams.sse_stream import streaming

bp = Blueprint("openai", __name__)

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
# A reply's error code -> the HTTP status a non-streaming request answers with.
REPLY_ERROR_STATUS = {"upstream_error": 502, "upstream_timeout": 504, "interrupted": 500}


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(description="Text, or a list of text parts.")

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="`invalid_request_error`, `authentication_error`, ...")
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """OpenAI's error body, so the SDKs raise their usual exceptions."""

    error: OpenAIErrorDetail


error_model_blueprint(bp, OpenAIError)


class ModelOut(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelOut]


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None


class ChatCompletion(BaseModel):
    """The whole reply (`stream` false)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: UsageOut


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | SkipJsonSchema[None] = None
    content: str | SkipJsonSchema[None] = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: str | None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice] = Field(description="Empty in the final usage chunk.")
    usage: UsageOut | SkipJsonSchema[None] = Field(
        None, description="Only in the final chunk, with `stream_options.include_usage`."
    )


class ChatCompletionIn(BaseModel):
    """The fields Royal uses; the others OpenAI defines (temperature, ...) are accepted and
    ignored, so existing client code runs unchanged."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: StreamOptions | None = None


def _error(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> Response:
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    response = jsonify(body)
    response.status_code = status
    return response


@bp.errorhandler(APIError)
async def _api_error(error: APIError) -> Response:
    response = _error(error.status_code, error.message, code=(error.code or "").lower() or None)
    response.headers.update(error.headers)
    return response


@bp.errorhandler(RequestSchemaValidationError)
async def _invalid(error: RequestSchemaValidationError) -> Response:
    first = validation_detail(error.validation_error)[0]
    return _error(400, f"{first['field']}: {first['msg']}", param=first["field"])


@bp.errorhandler(MalformedJSON)  # registered by its code (400): must be named to be ours
@bp.errorhandler(HTTPException)
async def _http_error(error: HTTPException) -> Response:
    return _error(error.code or 500, error.description or error.name)


class NotOffered(PathConverter):
    """Any path but those this blueprint serves, so that GET /v1/chat/completions is a 405 and
    OPTIONS /v1/models lists GET only. Keep it in step with the routes below."""

    regex = r"(?!(?:models|chat/completions)$)[^/].*?"


@bp.record_once
def _add_converter(state: BlueprintSetupState) -> None:
    state.app.url_map.converters["not_offered"] = NotOffered


@bp.route("/<not_offered:path>", methods=["GET", "POST"])
@hide  # a fallback, not an operation
@login_required
async def unknown(path: str) -> Response:
    """Any other OpenAI endpoint (embeddings, images, ...): not offered, in OpenAI's shape."""
    return _error(404, f"Royal does not offer /v1/{path}.", code="unknown_url")


def _model_ids() -> list[str]:
    return [get_agents().backend.model]


@bp.get("/models")
@login_required
@document_response(ModelList)
async def list_models() -> dict[str, Any]:
    """The models Royal answers with (its agent backend), in OpenAI's list format."""
    return {
        "object": "list",
        "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "royal"}
            for model in _model_ids()
        ],
    }


@bp.post("/chat/completions")
@login_required
@validate_request(ChatCompletionIn)
@document_response(ChatCompletion)
@document_event_stream(
    SSEEvent("message", "The next piece of the reply.", ChatCompletionChunk),
    SSEEvent("message", "The reply failed; the stream ends.", OpenAIError),
    SSEEvent("message", "The end of the stream.", text="[DONE]"),
    description="With `stream: true`: `chat.completion.chunk` frames (`data:` lines, no event "
    "names or ids), then `data: [DONE]`; `: ping` comments keep an idle stream open.",
)
@document_errors(404, 500, 502, 503, 504)
async def chat_completions(data: ChatCompletionIn) -> Response:
    """Answer a conversation as Royal's agent: streamed (`stream: true`) or whole."""
    if data.model not in _model_ids():
        return _error(
            404, f"The model {data.model!r} does not exist.", code="model_not_found", param="model"
        )
    if data.messages[-1].role != "user":
        return _error(400, "The last message must be the user's.", param="messages")
    require_streams_ready()
    conversation: list[tuple[agents.Role, str]] = [
        ("system" if m.role == "developer" else m.role, m.text()) for m in data.messages
    ]
    session, reply = await agents.start_chat(
        get_db(), current_identity().user_id, conversation, title="chat.completions"
    )
    get_broker().wake()
    completion = Completion(f"chatcmpl-{reply.id}", data.model, reply)
    headers = {"X-Royal-Session-Id": session.id}
    if data.stream:
        include_usage = bool(data.stream_options and data.stream_options.include_usage)
        response = Response(completion.sse(include_usage), headers={**sse.HEADERS, **headers})
        response.timeout = None
        return response
    name, final = await completion.wait()
    if name == "error":
        status = REPLY_ERROR_STATUS.get(final["code"], 503)
        response = _error(status, final["error"], code=final["code"])
    else:
        response = jsonify(completion.whole(final))
    response.headers.update(headers)
    return response


class Completion:
    """One reply read from its session's topic, in OpenAI's shapes."""

    def __init__(self, completion_id: str, model: str, reply: agents.Message) -> None:
        # Read in the request: the streamed body runs outside the app context.
        self.broker = get_broker()
        self.heartbeat = float(current_app.config["STREAM_HEARTBEAT_SECONDS"])
        self.id = completion_id
        self.model = model
        self.reply = reply
        self.created = int(time.time())
        self.topic = agents.topic(reply.session_id)

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The reply's events, (name, data), up to its ``done`` or ``error``; ``ping`` when
        idle. The session counts as watched meanwhile, so a client that goes away lets the
        grace period cancel the reply."""
        async with streaming(self.broker, [self.topic], self.reply.stream_after) as subscription:
            while (batch := await subscription.next_batch(self.heartbeat)) is not None:
                if not batch:
                    yield "ping", {}
                for event in batch:
                    body = orjson.loads(event.data)
                    if body.get("message_id") != self.reply.id:
                        continue
                    yield event.event, body
                    if event.event in ("done", "error"):
                        return

    async def wait(self) -> tuple[str, dict[str, Any]]:
        async for name, body in self.events():
            if name in ("done", "error"):
                return name, body
        raise APIError(503, "shutting_down", "The server is shutting down; retry.")

    async def sse(self, include_usage: bool) -> AsyncIterator[bytes]:
        first = True
        async for name, body in self.events():
            if name == "ping":
                yield sse.comment("ping")
            elif name == "message":
                delta = {"content": body["delta"]} | ({"role": "assistant"} if first else {})
                first = False
                yield self._frame(self._chunk(delta, None))
            elif name == "done":
                yield self._frame(self._chunk({}, "stop"))
                if include_usage:
                    yield self._frame(self._chunk(None, None) | {"usage": body["usage"]})
                yield b"data: [DONE]\n\n"
            else:
                error = {"message": body["error"], "type": "server_error", "code": body["code"]}
                yield self._frame({"error": error | {"param": None}})

    def _chunk(self, delta: dict[str, str] | None, finish: str | None) -> dict[str, Any]:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    @staticmethod
    def _frame(body: dict[str, Any]) -> bytes:
        return b"data: " + dumps_bytes(body) + b"\n\n"

    def whole(self, done: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done["content"]},
                    "finish_reason": done["finish_reason"],
                }
            ],
            "usage": done["usage"],
        }
