"""Agents: the old Flask chat contract (session, message, stream) plus listing and cancel.

A user message queues a reply; the reply streams on the session's SSE stream as ``message``
events ``{"message_id", "delta", "index"}`` and ends with ``done`` or ``error``. Sessions
belong to their user: someone else's session answers 404, exactly like one that never was.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationError
from quart import Blueprint, Response, request
from quart_schema import document_headers, validate_querystring, validate_request, validate_response

from royal.auth import current_identity, login_required
from royal.blueprints.live import STREAM_END_EVENTS, Resume, requested_last_event_id, sse_response
from royal.db import get_db
from royal.errors import APIError, validation_detail
from royal.openapi import SSEEvent, document_errors, document_event_stream, document_optional_body
from royal.pagination import MAX_ID, Page, PageQuery, decode_cursor, page_of
from royal.services import agents, replies
from royal.streams.extension import get_broker

bp = Blueprint("agents", __name__)

REPLY_END = ("done", "error")
SessionId = Field(min_length=1, max_length=64, description="From `POST /agents/session`.")


class SessionIn(BaseModel):
    title: str | None = Field(None, min_length=1, max_length=200)


class SessionCreated(BaseModel):
    session_id: str


class MessageIn(BaseModel):
    session_id: str = SessionId
    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=4000)


class MessageReceived(BaseModel):
    status: Literal["received"] = "received"
    message_id: int
    reply_id: int | None = Field(
        description="The assistant message that will answer a user message (stream it with "
        "`reply_id`); null for an assistant message."
    )


class StreamQuery(Resume):
    session_id: str = SessionId
    reply_id: int | None = Field(
        None,
        ge=1,
        le=MAX_ID,
        description="Stream this reply from its first token, even if it already ended.",
    )
    follow: bool = Field(False, description="Keep the stream open after the reply ends.")


class Delta(BaseModel):
    message_id: int = Field(description="The reply (an assistant message).")
    delta: str = Field(description="The text since the previous `message` event.")
    index: int = Field(description="0, 1, 2, ... within the reply: join the deltas in order.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Done(BaseModel):
    message_id: int
    content: str = Field(description="The whole reply.")
    usage: Usage
    finish_reason: str


class Failed(BaseModel):
    message_id: int
    code: str = Field(description="`cancelled`, `upstream_error`, `upstream_timeout`, ...")
    error: str
    content: str = Field(description="The text written before it ended.")


class SessionOut(BaseModel):
    session_id: str
    title: str | None
    created_at: str
    updated_at: str


class MessageOut(BaseModel):
    message_id: int
    session_id: str
    role: agents.Role
    content: str
    status: agents.Status = Field(
        description="`complete`; a reply is `pending`, then `streaming`, then `complete`, "
        "`cancelled` or `failed` (with the text it had)."
    )
    reply_to: int | None
    usage: dict[str, int] | None
    error: str | None
    created_at: str
    updated_at: str


class CancelOut(BaseModel):
    status: Literal["cancelled", "cancelling"]
    message_id: int


async def _session(session_id: str) -> agents.Session:
    session = await agents.select_session(get_db(), session_id, current_identity().user_id)
    if session is None:
        raise APIError(404, "SESSION_NOT_FOUND", f"No session {session_id!r}.")
    return session


@bp.post("/session")
@login_required
@validate_response(SessionCreated, 201)
@document_optional_body(SessionIn)
async def create_session() -> tuple[SessionCreated, int]:
    """Start a conversation; the body is optional (`{"title": ...}`)."""
    # Old clients send no body at all (or JSON null); anything else must be a JSON object.
    raw = await request.get_json(force=True) if await request.get_data() else None
    try:
        data = SessionIn.model_validate({} if raw is None else raw)
    except ValidationError as error:
        raise APIError(400, detail=validation_detail(error)) from None
    session = await agents.create_session(get_db(), current_identity().user_id, data.title)
    return SessionCreated(session_id=session.id), 201


@bp.post("/message")
@login_required
@validate_request(MessageIn)
@validate_response(MessageReceived)
@document_errors(404, 409)
async def send_message(data: MessageIn) -> MessageReceived:
    """Add a message to a session. A `user` message makes the agent answer on the session's
    stream; an `assistant` message is stored as context. 409 while a reply is in progress."""
    session = await _session(data.session_id)
    try:
        message, reply = await agents.add_message(get_db(), session, data.role, data.content)
    except agents.ReplyInProgress as busy:
        raise APIError(
            409,
            "REPLY_IN_PROGRESS",
            f"Reply {busy.message_id} is still being written; wait for it or cancel it.",
        ) from None
    get_broker().wake()
    return MessageReceived(message_id=message.id, reply_id=None if reply is None else reply.id)


@bp.get("/stream")
@login_required
@validate_querystring(StreamQuery)
@document_headers(Resume)
@document_errors(404, 503)
@document_event_stream(
    SSEEvent("message", "The next piece of the reply.", Delta),
    SSEEvent("done", "The reply is complete; the stream ends (unless `follow`).", Done),
    SSEEvent("error", "The reply ended early; the stream ends (unless `follow`).", Failed),
    *STREAM_END_EVENTS,
)
async def stream(query_args: StreamQuery) -> Response:
    """Server-Sent Events of the session's replies: `message` deltas, then `done` or `error`.

    Where it starts: after `Last-Event-ID` (header or `last_event_id`) when given; else at the
    first token of `reply_id`; else at the first token of the reply in progress; else with the
    next reply. It ends after that reply's `done` or `error` unless `follow=true`.
    """
    session = await _session(query_args.session_id)
    start = requested_last_event_id()
    if start is None:
        db = get_db()
        if query_args.reply_id is not None:
            reply = await agents.select_message(db, query_args.reply_id)
            if reply is None or reply.session_id != session.id or reply.job_id is None:
                raise APIError(404, "REPLY_NOT_FOUND", f"No reply {query_args.reply_id}.")
        else:
            reply = await agents.reply_in_progress(db, session.id)
        start = None if reply is None else reply.stream_after
    return sse_response(
        [agents.topic(session.id)], start, stop_after=() if query_args.follow else REPLY_END
    )


@bp.get("/sessions")
@login_required
@validate_querystring(PageQuery)
@validate_response(Page[SessionOut])
async def list_sessions(query_args: PageQuery) -> Page[SessionOut]:
    """Your sessions, newest first."""
    found = await agents.select_sessions(
        get_db(),
        current_identity().user_id,
        before_seq=decode_cursor(query_args.cursor),
        limit=query_args.limit,
    )
    return page_of(found, query_args.limit, _session_out, id_of="seq")


@bp.get("/sessions/<session_id>/messages")
@login_required
@validate_querystring(PageQuery)
@validate_response(Page[MessageOut])
@document_errors(404)
async def list_messages(session_id: str, query_args: PageQuery) -> Page[MessageOut]:
    """A session's messages, newest first. A reply in progress has its text once it ends."""
    session = await _session(session_id)
    found = await agents.select_messages(
        get_db(), session.id, before_id=decode_cursor(query_args.cursor), limit=query_args.limit
    )
    return page_of(found, query_args.limit, _message_out)


@bp.post("/sessions/<session_id>/cancel")
@login_required
@validate_response(CancelOut, 202)
@document_errors(404, 409)
async def cancel(session_id: str) -> tuple[CancelOut, int]:
    """Stop the session's reply. Its stream ends with `error` (code `cancelled`) and the
    message keeps the text written so far. 409 when no reply is in progress."""
    session = await _session(session_id)
    try:
        status, reply = await replies.cancel_reply(get_db(), session.id)
    except replies.NothingToCancel:
        raise APIError(409, "NOTHING_TO_CANCEL", "The session has no reply in progress.") from None
    get_broker().wake()
    return CancelOut(status=status, message_id=reply.id), 202  # type: ignore[arg-type]


def _session_out(session: agents.Session) -> SessionOut:
    return SessionOut.model_validate(session.to_json())


def _message_out(message: agents.Message) -> MessageOut:
    return MessageOut.model_validate(message.to_json())
