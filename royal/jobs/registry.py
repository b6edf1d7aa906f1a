"""Job handlers, registered by kind in code: an unknown kind is refused at enqueue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
    # True once a user asked to cancel the job: a handler that is being cancelled can tell a
    # cancellation (record partial work) from a lost lease or a shutdown (it will run again).
    cancel_requested: Callable[[], bool] = field(default=lambda: False)


Handler = Callable[[JobContext, Any], Awaitable[Any]]


DEFAULT_LANE = "jobs"


class JobHandlers:
    """Handlers by kind, each in a lane: every lane has its own workers and concurrency, so
    long-running kinds (agent replies) neither starve nor are starved by the rest."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._lane_of: dict[str, str] = {}
        self.lanes: dict[str, int | None] = {DEFAULT_LANE: None}  # None: JOB_CONCURRENCY

    def add_lane(self, name: str, concurrency: int) -> None:
        self.lanes[name] = concurrency

    def register(self, kind: str, handler: Handler, *, lane: str = DEFAULT_LANE) -> None:
        if kind in self._handlers:
            raise ValueError(f"a handler for {kind!r} is already registered")
        if lane not in self.lanes:
            raise ValueError(f"no lane {lane!r}: add_lane() first")
        self._handlers[kind] = handler
        self._lane_of[kind] = lane

    def kinds_in(self, lane: str) -> list[str]:
        return sorted(kind for kind, name in self._lane_of.items() if name == lane)

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers

    def __getitem__(self, kind: str) -> Handler:
        return self._handlers[kind]

    @property
    def kinds(self) -> list[str]:
        return sorted(self._handlers)
