"""The realtime endpoints: SSE streams, publishing, and the /ws WebSocket."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection
from typing import Any, cast

from pydantic import BaseModel, Field, field_validator
from quart import Blueprint, Response, current_app, request, websocket
from quart_schema import document_headers, document_querystring, validate_request, validate_response

from royal.auth import current_identity, get_revocations, roles_required
from royal.errors import APIError
from royal.openapi import SSEEvent, document_errors, document_event_stream
from royal.process_stats import process_stats
from royal.stream_body import StreamBody
from royal.streams import ws
from royal.streams.extension import get_broker
from royal.streams.sse import HEADERS
from royal.streams.sse_stream import SSEStream
from royal.streams.topics import TopicError, TopicForbidden

bp = Blueprint("live", __name__)
MAX_EVENT_ID = 2**63 - 1


class PublishIn(BaseModel):
    event: str = Field("message", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    data: Any = Field(description="Any JSON value; subscribers receive it as is.")


class StreamStats(BaseModel):
    worker_pid: int
    ready: bool
    topics: list[str]
    ephemeral_topics: list[str]
    subscriber_buffer: int
    counters: dict[str, int]
    listener: dict[str, Any] | None = Field(
        description="PostgreSQL LISTEN connection: connected, reconnects, last_error."
    )
    process: dict[str, int | None] = Field(
        description="This worker's asyncio tasks, open file descriptors and RSS in bytes."
    )


class Resume(BaseModel):
    """Where a stream resumes; an empty value is no value (EventSource's first connect)."""

    last_event_id: int | None = Field(
        None,
        ge=0,
        le=MAX_EVENT_ID,
        description="Resume after this event id: the `id:` of the last event received.",
    )

    @field_validator("last_event_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value


class StreamQuery(Resume):
    topic: list[str] = Field(
        default_factory=list, description="More topics, in addition to the path's."
    )


class ResetData(BaseModel):
    reason: str = Field(description="`retention`: deleted by age; `unknown_id`: never existed.")
    last_event_id: int
    resume_from: int


class RevokedData(BaseModel):
    reason: str


STREAM_END_EVENTS = (
    SSEEvent("reset", "The events after `Last-Event-ID` are gone: reload state.", ResetData),
    SSEEvent("revoked", "The credentials were revoked; the stream ends.", RevokedData),
)


class Published(BaseModel):
    id: int | None = Field(description="The event id (None on ephemeral topics).")
    topic: str
    event: str


async def _topics(raw: list[str], access: str) -> list[str]:
    """Parse and authorise topics, as 400/403 JSON errors."""
    broker = get_broker()
    try:
        topics = broker.topics.parse(raw)
        await broker.topics.authorize(current_identity(), topics, access)  # type: ignore[arg-type]
    except TopicError as error:
        raise APIError(400, "BAD_TOPIC", str(error)) from None
    except TopicForbidden as error:
        raise APIError(403, "TOPIC_FORBIDDEN", f"You may not {access} {error}.") from None
    return topics


def require_streams_ready() -> None:
    if not get_broker().ready:
        raise APIError(
            503,
            "STREAMS_UNAVAILABLE",
            "The event log is not reachable yet.",
            headers={"Retry-After": "5"},
        )


def requested_last_event_id() -> int | None:
    """The resume point: the Last-Event-ID header, or ``?last_event_id=``; None when absent."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if raw is None or raw == "":
        return None
    # isdigit() alone admits '²' and 5,000-digit numbers; ids are 63-bit integers.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= MAX_EVENT_ID):
        raise APIError(400, "BAD_LAST_EVENT_ID", "Last-Event-ID is an event id (an integer).")
    return int(raw)


@bp.get("/streams")
@validate_response(StreamStats)
async def stream_stats() -> StreamStats:
    """This worker's realtime layer: topics, open streams and counters since start."""
    broker = get_broker()
    return StreamStats(
        worker_pid=os.getpid(),
        ready=broker.ready,
        topics=sorted(broker.topics.names),
        ephemeral_topics=sorted(broker.topics.ephemeral),
        subscriber_buffer=broker.buffer_size,
        counters=dataclasses.asdict(broker.counters),
        listener=listener.status()
        if (listener := current_app.extensions["royal.stream_listener"])
        else None,
        process=process_stats(),
    )


@bp.get("/streams/<topic>")
@document_querystring(StreamQuery)
@document_headers(Resume)
@document_errors(403, 503)
@document_event_stream(
    SSEEvent(
        None,
        "An event of the topic, with the data it was published with: `alert.created`, "
        "`job.running`, `setting.changed`, ... (docs/realtime.md lists them).",
    ),
    *STREAM_END_EVENTS,
)
async def stream(topic: str) -> Response:
    """Server-Sent Events for one or more topics (comma-separated, or repeated `?topic=`).

    Resume exactly with the `Last-Event-ID` header (or `?last_event_id=` for clients that
    cannot set headers): events after it are replayed from the log, then live ones follow.
    Frames: `id:` (the event id), `event:` (its name), `data:` (its JSON). A `reset` event
    says that events before its id are gone (retention). Idle streams carry a `: ping` comment.
    """
    names = await _topics([topic, *request.args.getlist("topic")], "read")
    return sse_response(names, requested_last_event_id())


def sse_response(
    topics: list[str], last_event_id: int | None, *, stop_after: Collection[str] = ()
) -> Response:
    """The SSE response for authorised ``topics``: resumable, heartbeats, ended on revocation."""
    require_streams_ready()
    config = current_app.config
    identity = current_identity()
    watcher = get_revocations()
    stream = SSEStream(
        get_broker(),
        topics,
        last_event_id,
        heartbeat_seconds=config["STREAM_HEARTBEAT_SECONDS"],
        retry_ms=config["STREAM_RETRY_MS"],
        watch=lambda on_revoked: watcher.watch(identity.token_id, on_revoked),
        stop_after=stop_after,
    )
    response = Response(StreamBody(stream), headers=dict(HEADERS))
    response.timeout = None  # this stream only: never cut by RESPONSE_TIMEOUT
    return response


@bp.post("/streams/<topic>")
@roles_required("operator")
@validate_request(PublishIn)
@validate_response(Published, 201)
async def publish(topic: str, data: PublishIn) -> tuple[Published, int]:
    """Publish a JSON event on a topic (operators); returns its id.

    Durable topics store the event first, so every subscriber, on any worker, gets it in order
    and a reconnecting client can replay it.
    """
    (name,) = await _topics([topic], "publish")
    event = await get_broker().publish(name, data.event, data.data)
    return Published(id=event.id, topic=name, event=data.event), 201


@bp.websocket("/ws")
async def live_socket() -> None:
    """WebSocket: subscribe, unsubscribe and ping; events in the same envelope as SSE."""
    identity = current_identity()  # authenticated before the handshake is accepted
    require_streams_ready()
    config = current_app.config
    watcher = get_revocations()
    await websocket.accept()
    session = ws.Session(
        # The object, not the context-local proxy: events are sent from the dispatcher's task.
        cast(ws.Channel, websocket._get_current_object()),  # type: ignore[attr-defined]
        get_broker(),
        identity,
        max_message_bytes=config["WS_MAX_MESSAGE_BYTES"],
        max_subscriptions=config["WS_MAX_SUBSCRIPTIONS"],
        max_messages_per_second=config["WS_MAX_MESSAGES_PER_SECOND"],
        heartbeat_seconds=config["STREAM_HEARTBEAT_SECONDS"],
    )
    await session.serve(lambda on_revoked: watcher.watch(identity.token_id, on_revoked))
