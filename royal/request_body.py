"""Quart's request Body with list-backed events.

Quart's Body makes two asyncio.Events per request, ~760 bytes of deque each, and an SSE stream
keeps its request, so every open stream held them (W7 in bench/README.md). The behaviour is
Quart's: only the events are royal/message_queue.py's.
"""

from __future__ import annotations

from quart.wrappers.request import Body
from werkzeug.exceptions import RequestEntityTooLarge

from royal.message_queue import Event


class LightBody(Body):
    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        self._data = bytearray()
        self._complete = Event()  # type: ignore[assignment]
        self._has_data = Event()  # type: ignore[assignment]
        self._max_content_length = max_content_length
        self._must_raise = None
        if (
            expected_content_length is not None
            and max_content_length is not None
            and expected_content_length > max_content_length
        ):
            self._must_raise = RequestEntityTooLarge()
