"""The bodies both peers accept and return, defined once so the two validate alike."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ItemIn(BaseModel):
    """``POST /validated``."""

    name: str = Field(min_length=1, max_length=100)
    count: int = Field(ge=0, le=1000)
    tags: list[str] = Field(default_factory=list, max_length=10)


class Created(BaseModel):
    id: int
    name: str
    count: int
    tags: list[str]


class PublishIn(BaseModel):
    """``POST /streams/alerts``, with Royal's rules for the event name."""

    event: str = Field("message", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    data: Any = None


class Published(BaseModel):
    """Royal's answer to a publish."""

    id: int
    topic: str
    event: str
