"""Job handlers, registered by kind in code: an unknown kind is refused at enqueue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from royal.db import Database
    from royal.services.jobs import Job
    from royal.streams.broker import Broker


@dataclass(frozen=True)
class JobContext:
    """What a handler gets besides its payload: the job row and Royal's shared services."""

    job: Job
    db: Database
    broker: Broker
    config: dict[str, Any]


Handler = Callable[[JobContext, Any], Awaitable[Any]]


class JobHandlers:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, kind: str, handler: Handler) -> None:
        if kind in self._handlers:
            raise ValueError(f"a handler for {kind!r} is already registered")
        self._handlers[kind] = handler

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers

    def __getitem__(self, kind: str) -> Handler:
        return self._handlers[kind]

    @property
    def kinds(self) -> list[str]:
        return sorted(self._handlers)
