"""Topic names and who may read or publish them.

Built-in topics (``alerts``, ``events``, ``jobs``, ``metrics``, ``system`` and any listed in
STREAM_TOPICS) are readable by every user and publishable by operators. A prefixed topic such
as ``agent:<session_id>`` belongs to whoever registered its prefix: the agents area registers
``agent`` with a check that the caller owns the session. Unknown topics are refused, so a typo
is an error, not a silent empty stream.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Literal

from royal.services.tokens import Identity
from royal.services.users import role_at_least

Access = Literal["read", "publish"]
PrefixCheck = Callable[[Identity, str, Access], Awaitable[bool]]
Hold = Callable[[str], AbstractContextManager[object]]

_TOPIC = re.compile(r"^[a-z][a-z0-9_.-]{0,63}(?::[A-Za-z0-9_.-]{1,128})?$")


class TopicError(ValueError):
    """A topic name that is malformed or unknown."""


class TopicForbidden(PermissionError):
    """The caller may not read (or publish to) this topic."""


class Topics:
    def __init__(self, names: Iterable[str], ephemeral: Iterable[str]) -> None:
        self.names = frozenset(names)
        self.ephemeral = frozenset(ephemeral)
        self._prefixes: dict[str, PrefixCheck] = {}
        self._holds: dict[str, Hold] = {}

    def register_prefix(self, prefix: str, check: PrefixCheck, hold: Hold | None = None) -> None:
        """Let ``prefix:<anything>`` topics exist, guarded by ``check``. ``hold(topic)`` is
        entered while a stream reads the topic (agents count their watchers with it)."""
        self._prefixes[prefix] = check
        if hold is not None:
            self._holds[prefix] = hold

    @contextmanager
    def reading(self, topics: Iterable[str]) -> Iterator[None]:
        """Enter the holds of ``topics`` for the life of a stream that reads them."""
        holds = [
            (hold, topic)
            for topic in topics
            if ":" in topic and (hold := self._holds.get(topic.partition(":")[0])) is not None
        ]
        if not holds:  # most streams: no ExitStack kept for the life of the stream
            yield
            return
        with ExitStack() as stack:
            for hold, topic in holds:
                stack.enter_context(hold(topic))
            yield

    def parse(self, raw: Iterable[str]) -> list[str]:
        """Validate topic names (comma-separated lists allowed), keeping order, no duplicates."""
        topics: list[str] = []
        for chunk in raw:
            for topic in (part.strip() for part in chunk.split(",")):
                if not _TOPIC.match(topic):
                    raise TopicError(f"Malformed topic {topic!r}")
                if topic not in self.names and topic.partition(":")[0] not in self._prefixes:
                    raise TopicError(f"Unknown topic {topic!r}")
                if topic not in topics:
                    topics.append(topic)
        if not topics:
            raise TopicError("No topic given")
        return topics

    async def authorize(self, identity: Identity, topics: Iterable[str], access: Access) -> None:
        for topic in topics:
            prefix, colon, _ = topic.partition(":")
            if colon:
                allowed = await self._prefixes[prefix](identity, topic, access)
            else:
                allowed = access == "read" or role_at_least(identity.role, "operator")
            if not allowed:
                raise TopicForbidden(topic)
