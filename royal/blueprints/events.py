"""Event ingestion (idempotent by id) and the event list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from royal.auth import roles_required
from royal.db import get_db
from royal.errors import APIError, validation_detail
from royal.openapi import document_errors
from royal.pagination import Page, PageQuery, decode_cursor, page_of
from royal.services import event_handlers, events
from royal.streams.extension import get_broker

bp = Blueprint("events", __name__)


def _typed_data(schema: dict[str, Any]) -> None:
    """State in the schema what ``validate_data`` checks: the data of a known type."""
    schema["allOf"] = [
        {
            "if": {"properties": {"type": {"const": type_}}, "required": ["type"]},
            "then": {"properties": {"data": model.model_json_schema()}, "required": ["data"]},
        }
        for type_, model in event_handlers.DATA_MODELS.items()
    ]


class EventIn(BaseModel):
    model_config = ConfigDict(json_schema_extra=_typed_data)

    id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Your idempotency key: a repeat with the same id is processed once.",
    )
    type: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="`alert` creates an alert from `data`; other types are stored and published.",
        examples=["alert", "heartbeat"],
    )
    source: str = Field(min_length=1, max_length=200)
    data: dict[str, Any] = Field(default_factory=dict)


class EventOut(BaseModel):
    id: str
    type: str
    source: str
    data: dict[str, Any]
    status: str
    result: Any
    job_id: int | None
    received_at: datetime
    processed_at: datetime | None

    @classmethod
    def of(cls, event: events.Event) -> EventOut:
        processed = event.processed_at
        return cls(
            id=event.id,
            type=event.type,
            source=event.source,
            data=event.data,
            status=event.status,
            result=event.result,
            job_id=event.job_id,
            received_at=datetime.fromtimestamp(event.received_at, UTC),
            processed_at=None if processed is None else datetime.fromtimestamp(processed, UTC),
        )


class EventQuery(PageQuery):
    type: str | None = Field(None, max_length=64)
    source: str | None = Field(None, max_length=200)


@bp.post("")
@roles_required("operator")
@validate_request(EventIn)
@validate_response(EventOut, 201)
@validate_response(EventOut, 200)
async def ingest_event(data: EventIn) -> tuple[EventOut, int]:
    """Ingest an event: 201 the first time, 200 with the first result for a repeated id.

    The event is stored, published on `events`, and processed by an `events.process` job:
    an `alert` event (from an EAS decoder, say) creates an alert.
    """
    try:
        event_handlers.validate_data(data.type, data.data)
    except ValidationError as error:
        detail = validation_detail(error)
        for item in detail:
            item["field"] = f"data.{item['field']}"
            item["loc"] = ["data", *item["loc"]]
        raise APIError(400, detail=detail) from None
    event, created = await events.ingest(get_db(), data.id, data.type, data.source, data.data)
    if created:
        get_broker().wake()
    return EventOut.of(event), 201 if created else 200


@bp.get("")
@validate_querystring(EventQuery)
@validate_response(Page[EventOut])
async def list_events(query_args: EventQuery) -> Page[EventOut]:
    """List ingested events, newest first, filtered by `type` and `source`; paged by `cursor`."""
    rows = await events.select_events(
        get_db(),
        type_=query_args.type,
        source=query_args.source,
        before_seq=decode_cursor(query_args.cursor),
        limit=query_args.limit,
    )
    return page_of(rows, query_args.limit, EventOut.of, id_of="seq")


@bp.get("/<event_id>")
@validate_response(EventOut)
@document_errors(404)
async def get_event(event_id: str) -> EventOut:
    """One event, with its processing status and result."""
    event = await events.select_event(get_db(), event_id)
    if event is None:
        raise APIError(404, "EVENT_NOT_FOUND", f"No event {event_id!r}")
    return EventOut.of(event)
