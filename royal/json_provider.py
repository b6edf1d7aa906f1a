"""orjson as Quart's JSON provider: several times faster than the standard library's json.

Datetimes leave as ISO 8601 (not Flask's RFC 822 dates), which is what JSON APIs expect; UUIDs,
dataclasses and pydantic-free builtins are handled natively by orjson. Keys keep their order.
"""

from __future__ import annotations

import decimal
from typing import Any

import orjson
from pydantic_core import to_jsonable_python
from quart import Response
from quart.json.provider import JSONProvider

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return list(value)
    if hasattr(value, "__html__"):
        return str(value.__html__())
    return to_jsonable_python(value)  # pydantic models and what pydantic knows; else TypeError


def dumps_bytes(value: Any) -> bytes:
    """Serialise to compact UTF-8 JSON bytes (the form sent on the wire)."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


class OrjsonProvider(JSONProvider):
    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs.get("indent"):  # quart-schema's pretty-printed spec for the docs pages
            return orjson.dumps(
                obj, default=_default, option=_OPTIONS | orjson.OPT_INDENT_2
            ).decode()
        return dumps_bytes(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return Response(dumps_bytes(obj), mimetype=self.mimetype)
