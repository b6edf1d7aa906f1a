"""One cursor pagination for every list endpoint: newest first, stable while rows are added.

A page is ``{"items": [...], "next_cursor": "..." | null}``. The cursor is the id of the last
item, opaque to clients; the next page is ``id < cursor``. Rows inserted meanwhile have larger
ids, so they never shift a page or appear twice (offset pagination would do both).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from royal.errors import APIError

T = TypeVar("T")
R = TypeVar("R")

MAX_LIMIT = 200
MAX_ID = 2**63 - 1  # ids are 64-bit signed integers (SQLite INTEGER, PostgreSQL BIGINT)


class PageQuery(BaseModel):
    limit: int = Field(50, ge=1, le=MAX_LIMIT, description="Items per page.")
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id to continue below; a malformed cursor is a 400, not a 500."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, value = raw.partition(":")
        if version != "v1" or not (value.isascii() and value.isdigit() and len(value) <= 19):
            raise ValueError(raw)
        if int(value) > MAX_ID:
            raise ValueError(raw)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise APIError(400, "BAD_CURSOR", "The cursor is not one this API gave out.") from None


def page_of(rows: Sequence[R], limit: int, convert: Callable[[R], T], id_of: str = "id") -> Page[T]:
    """Build a page from ``limit + 1`` fetched rows: the extra row only says there is more."""
    kept = rows[:limit]
    more = len(rows) > limit and bool(kept)
    next_cursor = encode_cursor(getattr(kept[-1], id_of)) if more else None
    return Page[T](items=[convert(row) for row in kept], next_cursor=next_cursor)
