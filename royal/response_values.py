"""quart-schema's response conversion without its per-response cost.

quart-schema wraps ``app.make_response`` to turn models into JSON-ready values. For a plain
dict or list it builds a new pydantic ``TypeAdapter`` on every response (about a tenth of a
small JSON request's CPU), only to copy the value. Royal's orjson provider already serialises
dicts, lists, dataclasses and (through its default hook) pydantic models, so those pass
through untouched; models still go through ``model_dump`` (aliases and dump options apply),
and the adapter for a pydantic dataclass or TypedDict is built once per type.
"""

from __future__ import annotations

from dataclasses import is_dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, RootModel, TypeAdapter
from pydantic.dataclasses import is_pydantic_dataclass
from quart import Quart
from typing_extensions import is_typeddict


def install(app: Quart) -> None:
    """Replace quart-schema's wrapper (call after ``QuartSchema(app)``)."""
    make_response = type(app).make_response.__get__(app)
    options = app.config["QUART_SCHEMA_PYDANTIC_DUMP_OPTIONS"] or {}
    if app.config["QUART_SCHEMA_CONVERT_CASING"]:
        raise ValueError("QUART_SCHEMA_CONVERT_CASING is not supported by Royal")

    async def convert_then_make_response(result: Any) -> Any:
        if isinstance(result, tuple):
            result = (_dump(result[0], options), *result[1:])
        else:
            result = _dump(result, options)
        return await make_response(result)

    app.make_response = convert_then_make_response  # type: ignore[method-assign]


def _dump(value: Any, options: dict[str, Any]) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(**options)
    if isinstance(value, dict | list | str | bytes) or value is None:
        return value  # the JSON provider writes these (and models nested in them) itself
    kind: Any = type(value)
    if is_pydantic_dataclass(kind) or is_typeddict(kind):
        return _root_model(kind)(value).model_dump(**options)
    if is_dataclass(value):
        return _adapter(kind).dump_python(value, **options)
    return value


@cache
def _root_model(kind: type) -> type[RootModel[Any]]:
    return RootModel[kind]  # type: ignore[valid-type]


@cache
def _adapter(kind: type) -> TypeAdapter[Any]:
    return TypeAdapter(kind)
