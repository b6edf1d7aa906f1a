"""What an agent backend is: given a conversation, stream the reply's text, then its usage.

Backends are framework-free and know nothing of sessions, jobs or streams: the reply job
(``royal.agents.reply``) feeds them a conversation and turns what they yield into durable
events. A backend raises :class:`BackendError` with a stable ``code`` when it cannot answer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts, as the OpenAI API reports them (estimated when a backend cannot count)."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


ErrorCode = Literal[
    "upstream_unavailable",  # could not connect, or 5xx/429 on every attempt
    "upstream_timeout",  # no chunk within the read timeout
    "upstream_error",  # the upstream refused the request (4xx) or sent garbage
    "circuit_open",  # too many recent failures: not even trying
]


class BackendError(Exception):
    """The backend could not produce (the rest of) a reply; ``code`` says why."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Backend(Protocol):
    name: str  # "local", "openai"
    model: str  # the model name Royal's /v1/models lists for this backend

    def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str | Usage, None]:
        """Yield text deltas in order, then exactly one :class:`Usage` at the end.

        Closing the iterator early (``aclose()``) must cancel the upstream work.
        """
        ...

    async def status(self) -> dict[str, Any]:
        """Readiness details; raise when the backend cannot answer now."""
        ...

    async def aclose(self) -> None:
        """Release connections (called once at shutdown)."""
        ...


def estimate_tokens(text: str) -> int:
    """A rough token count (~4 characters per token) for backends that report none."""
    return max(1, round(len(text) / 4)) if text else 0
