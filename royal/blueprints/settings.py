"""Runtime settings: read by every user, changed by admins."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import validate_request, validate_response

from royal.auth import login_required, roles_required
from royal.db import get_db
from royal.errors import APIError, validation_detail
from royal.openapi import document_errors
from royal.services import settings
from royal.streams.extension import get_broker

bp = Blueprint("settings", __name__)


class SettingOut(BaseModel):
    key: str
    value: Any = Field(description="The value in effect: the stored one, else the default.")
    default: Any
    description: str
    value_schema: dict[str, Any] = Field(description="JSON Schema of the value: type and limits.")


class SettingList(BaseModel):
    items: list[SettingOut]


class SettingIn(BaseModel):
    value: Any = Field(description="The new value; it must match the setting's schema.")


def _out(setting: settings.Setting, value: Any) -> SettingOut:
    return SettingOut(
        key=setting.key,
        value=value,
        default=setting.default,
        description=setting.description,
        value_schema=setting.schema,
    )


def _lookup(key: str) -> settings.Setting:
    try:
        return settings.lookup(key)
    except settings.UnknownSetting:
        raise APIError(404, "SETTING_NOT_FOUND") from None


@bp.get("/", strict_slashes=False)
@login_required
@validate_response(SettingList)
async def list_settings() -> SettingList:
    """Every setting with its value, default, description and value schema."""
    values = await settings.get_settings(get_db())
    return SettingList(
        items=[_out(setting, values[key]) for key, setting in settings.REGISTRY.items()]
    )


@bp.get("/<key>")
@login_required
@validate_response(SettingOut)
@document_errors(404)
async def get_setting(key: str) -> SettingOut:
    """One setting."""
    setting = _lookup(key)
    return _out(setting, await settings.get_setting(get_db(), key))


@bp.put("/<key>")
@roles_required("admin")
@validate_request(SettingIn)
@validate_response(SettingOut)
@document_errors(404)
async def put_setting(key: str, data: SettingIn) -> SettingOut:
    """Change a setting (admins).

    The value is checked against the setting's schema; a bad one is a 400 whose `detail` names
    the key. `system` subscribers receive `setting.changed` with the key and the new value.
    """
    setting = _lookup(key)
    try:
        value = await settings.set_setting(get_db(), key, data.value)
    except settings.InvalidSetting as error:
        detail = [
            {**item, "field": key, "loc": [key, *item["loc"]]}
            for item in validation_detail(error.error)
        ]
        raise APIError(400, "INVALID_SETTING", str(error), detail=detail) from None
    get_broker().wake()
    return _out(setting, value)
