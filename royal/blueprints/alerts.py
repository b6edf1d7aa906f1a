"""Alerts: list, raise, change and withdraw EAS/CAP-style alerts.

Every change is published on the `alerts` topic (`alert.created`, `alert.updated`,
`alert.deleted`, and `alert.expired` when an alert's expiry passes), with the alert in the
same JSON shape as these endpoints return.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from quart import Blueprint, url_for
from quart_schema import validate_querystring, validate_request, validate_response

from royal.auth import current_identity, login_required, roles_required
from royal.db import get_db
from royal.errors import APIError
from royal.openapi import document_empty, document_errors
from royal.pagination import Page, PageQuery, decode_cursor, page_of
from royal.services import alerts
from royal.services.alerts import Severity
from royal.streams.extension import get_broker

bp = Blueprint("alerts", __name__)

Area = Annotated[str, StringConstraints(min_length=1, max_length=32)]
Message = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Areas = Annotated[
    list[Area], Field(max_length=100, description="Area codes, e.g. SAME/FIPS `048113`.")
]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class AlertQuery(PageQuery):
    state: Literal["active", "expired", "all"] = Field(
        "active", description="`active`: not expired yet; `expired`; or `all`."
    )
    severity: Severity | None = None


class AlertIn(BaseModel):
    event_code: str = Field(
        pattern=r"^[A-Z]{3}$", description="EAS event code: three upper-case letters (EAN)."
    )
    message: Message
    severity: Severity
    areas: Areas = []
    expires_at: AwareDatetime | None = Field(
        None, description="With a time zone, in the future; default: now + the default TTL."
    )
    source: str | None = Field(None, min_length=1, max_length=100, description="Who sent it.")
    source_event_id: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.timestamp() <= time.time():
            raise ValueError("must be in the future")
        return value


def _left_out_not_null(schema: dict[str, Any]) -> None:
    """What AlertPatch's validators check, in its JSON Schema: a field may be left out but
    may not be null, and at least one is given."""
    schema["minProperties"] = 1
    for field in schema["properties"].values():
        kinds = [kind for kind in field.pop("anyOf") if kind != {"type": "null"}]
        field.pop("default", None)
        field.update(kinds[0] if len(kinds) == 1 else {"anyOf": kinds})


class AlertPatch(BaseModel):
    model_config = ConfigDict(json_schema_extra=_left_out_not_null)

    message: Message | None = None
    severity: Severity | None = None
    areas: Areas | None = None
    expires_at: AwareDatetime | None = Field(
        None, description="A past time ends the alert now (`alert.expired` follows)."
    )

    @field_validator("message", "severity", "areas", "expires_at")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value

    @model_validator(mode="after")
    def _changes_something(self) -> AlertPatch:
        if not self.model_fields_set:
            raise ValueError("give at least one of message, severity, areas, expires_at")
        return self


class AlertOut(BaseModel):
    id: int
    event_code: str
    message: str
    severity: Severity
    areas: list[str]
    expires_at: Timestamp
    expired: bool = Field(description="Whether expires_at has passed (server time).")
    source: str | None
    source_event_id: str | None
    created_by: int | None = Field(description="The user id of the creator (null once deleted).")
    created_at: Timestamp
    updated_at: Timestamp


def _out(alert: alerts.Alert) -> AlertOut:
    return AlertOut.model_validate(alert.to_json())


async def _found(alert_id: int) -> alerts.Alert:
    alert = await alerts.select_alert(get_db(), alert_id)
    if alert is None:
        raise APIError(404, "ALERT_NOT_FOUND")
    return alert


@bp.get("/", strict_slashes=False)
@login_required
@validate_querystring(AlertQuery)
@validate_response(Page[AlertOut])
async def list_alerts(query_args: AlertQuery) -> Page[AlertOut]:
    """List alerts, newest first: active ones unless `state` says otherwise.

    Paginated with `limit` and `cursor`; an alert leaves the active list when it expires.
    """
    found = await alerts.select_alerts(
        get_db(),
        state=query_args.state,
        severity=query_args.severity,
        before_id=decode_cursor(query_args.cursor),
        limit=query_args.limit,
    )
    return page_of(found, query_args.limit, _out)


@bp.post("/", strict_slashes=False)
@roles_required("operator")
@validate_request(AlertIn)
@validate_response(AlertOut, 201)
async def create_alert(data: AlertIn) -> tuple[AlertOut, int, dict[str, str]]:
    """Raise an alert (operators).

    Without `expires_at` it stays active for the `alert_default_ttl_minutes` setting.
    `alerts` subscribers receive `alert.created`.
    """
    alert = await alerts.create_alert(
        get_db(),
        event_code=data.event_code,
        message=data.message,
        severity=data.severity,
        areas=data.areas,
        expires_at=None if data.expires_at is None else data.expires_at.timestamp(),
        source=data.source,
        source_event_id=data.source_event_id,
        created_by=current_identity().user_id,
    )
    get_broker().wake()
    location = url_for("alerts.get_alert", alert_id=alert.id)
    return _out(alert), 201, {"Location": location}


@bp.get("/<int:alert_id>")
@login_required
@validate_response(AlertOut)
@document_errors(404)
async def get_alert(alert_id: int) -> AlertOut:
    """Fetch one alert, active or expired."""
    return _out(await _found(alert_id))


@bp.patch("/<int:alert_id>")
@roles_required("operator")
@validate_request(AlertPatch)
@validate_response(AlertOut)
@document_errors(404)
async def update_alert(alert_id: int, data: AlertPatch) -> AlertOut:
    """Change an alert's message, severity, areas or expiry (operators).

    Only the fields given change. `alerts` subscribers receive `alert.updated`.
    """
    changes = data.model_dump(include=data.model_fields_set)
    if "expires_at" in changes:
        changes["expires_at"] = changes["expires_at"].timestamp()
    alert = await alerts.update_alert(get_db(), alert_id, changes)
    if alert is None:
        raise APIError(404, "ALERT_NOT_FOUND")
    get_broker().wake()
    return _out(alert)


@bp.delete("/<int:alert_id>")
@roles_required("operator")
@document_empty(204, "Withdrawn.")
@document_errors(404)
async def delete_alert(alert_id: int) -> tuple[str, int]:
    """Withdraw an alert (operators).

    Answers 204 with an empty body; `alerts` subscribers receive `alert.deleted` with its id.
    """
    if not await alerts.delete_alert(get_db(), alert_id):
        raise APIError(404, "ALERT_NOT_FOUND")
    get_broker().wake()
    return "", 204
