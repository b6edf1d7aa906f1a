"""What an ingested event does, by type; run by the ``events.process`` job.

A type may declare the shape of its data (checked at ingest, so a bad event is a 400 for the
sender, not a failing job later) and a handler. Types without a handler are stored and
published, and processing just marks them done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from royal.services import alerts, events

if TYPE_CHECKING:
    from royal.jobs.registry import JobContext


class AlertEventData(BaseModel):
    """An alert as an EAS decoder reports it."""

    event_code: str = Field(
        pattern=r"^[A-Z]{3}$", description="EAS event code, e.g. TOR, EAN, RWT."
    )
    message: str = Field(min_length=1, max_length=2000)
    severity: Literal["extreme", "severe", "moderate", "minor", "unknown"] = "unknown"
    areas: list[str] = Field(default_factory=list, max_length=100)
    expires_at: AwareDatetime | None = None


async def _create_alert(context: JobContext, event: events.Event) -> dict[str, Any]:
    data = AlertEventData.model_validate(event.data)
    alert = await alerts.create_alert(
        context.db,
        event_code=data.event_code,
        message=data.message,
        severity=data.severity,
        areas=data.areas,
        expires_at=None if data.expires_at is None else data.expires_at.timestamp(),
        source=event.source,
        source_event_id=event.id,
    )
    return {"alert_id": alert.id}


Handler = Callable[["JobContext", events.Event], Awaitable[dict[str, Any]]]
DATA_MODELS: dict[str, type[BaseModel]] = {"alert": AlertEventData}
HANDLERS: dict[str, Handler] = {"alert": _create_alert}


def validate_data(type_: str, data: Any) -> None:
    """Raise pydantic's ValidationError when a known type's data is malformed."""
    model = DATA_MODELS.get(type_)
    if model is not None:
        model.model_validate(data)


class _AlreadyProcessed(Exception):
    """Another run processed the event first: roll this run's effects back."""


async def process_event_job(context: JobContext, payload: Any) -> dict[str, Any]:
    """Apply an event's handler and mark it processed, in one transaction: effects once."""
    db = context.db
    event = await events.select_event(db, payload["event_id"])
    if event is None:
        return {"skipped": "event not found"}
    handler = HANDLERS.get(event.type)
    try:
        async with db.transaction():
            result = await handler(context, event) if handler else {"handled": False}
            if await events.mark_processed(db, event.id, result) is None:
                raise _AlreadyProcessed
    except _AlreadyProcessed:
        return {"skipped": "already processed"}
    return result
