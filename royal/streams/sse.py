"""Server-Sent Events framing: encode frames, and parse them back for tests and clients.

Pure functions and one small parser, no Quart: the broker encodes a frame once and sends the
same bytes to every subscriber. The parser follows the WHATWG EventSource rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from royal.streams.log import StoredEvent

# No Connection header: it is forbidden in HTTP/2, and HTTP/1.1 keeps the connection by default.
HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # nginx: pass each frame on at once
    }
)

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode(
    data: str,
    *,
    event: str | None = None,
    id: int | str | None = None,
    retry_ms: int | None = None,
) -> bytes:
    """One frame: ``id``, ``event``, ``retry``, then a ``data:`` line per line of ``data``.

    Every line break style in ``data`` becomes its own ``data:`` line, which the client joins
    with ``\\n`` again. An event name or id with a line break would let the value forge fields
    of its own, so it is refused.
    """
    lines: list[str] = []
    if id is not None:
        id_text = str(id)
        _refuse_line_breaks("id", id_text)
        if "\0" in id_text:  # a client ignores such an id, so a resume would silently break
            raise ValueError("an SSE id must not contain NUL")
        lines.append(f"id: {id_text}")
    if event is not None:
        _refuse_line_breaks("event", event)
        lines.append(f"event: {event}")
    if retry_ms is not None:
        lines.append(_retry_line(retry_ms))
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def comment(text: str = "") -> bytes:
    """A comment frame (``: text``), the keep-alive heartbeat; clients ignore it."""
    return "".join(f": {line}\n" for line in _LINE_BREAK.split(text)).encode() + b"\n"


def retry(ms: int) -> bytes:
    """A frame that only sets the client's reconnection delay."""
    return f"{_retry_line(ms)}\n\n".encode()


def encode_event(event: StoredEvent) -> bytes:
    """The frame for a stored event: its row id is the SSE id a client resumes from."""
    return encode(event.data, event=event.event, id=event.id)


def _refuse_line_breaks(field: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"an SSE {field} must not contain a line break: {value!r}")


def _retry_line(ms: int) -> str:
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise ValueError(f"retry must be a non-negative integer of milliseconds: {ms!r}")
    return f"retry: {ms}"


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """One dispatched event, as a browser's EventSource would deliver it.

    ``id`` is the last event id in force at dispatch (EventSource's ``lastEventId``: it carries
    over from earlier frames), ``None`` if the stream never sent one. ``retry`` is the retry
    field given in this frame's own block, if any.
    """

    id: str | None
    event: str
    data: str
    retry: int | None = None


class SSEParser:
    """Incremental EventSource parser: feed it bytes in chunks of any size, get events back.

    Comments are dropped, as EventSource does, but counted in ``comments`` so tests can see
    heartbeats. ``retry`` holds the latest reconnection delay, also from frames without data
    (which, per the spec, dispatch nothing). An unterminated last event is never dispatched.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # an incomplete line
        self._skip_lf = False  # the last chunk ended in CR: a leading LF belongs to it
        self._started = False  # a BOM is dropped only at the very start of the stream
        self._data: list[str] = []
        self._event = ""
        self._block_retry: int | None = None
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[ParsedEvent]:
        text = self._decoder.decode(chunk)
        if text and not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if text and self._skip_lf:
            self._skip_lf = False
            text = text.removeprefix("\n")
        events: list[ParsedEvent] = []
        start = 0
        buffer = self._pending + text
        for match in _LINE_BREAK.finditer(buffer, len(self._pending)):
            if match.end() == len(buffer) and match.group() == "\r":
                self._skip_lf = True
            dispatched = self._line(buffer[start : match.start()])
            if dispatched is not None:
                events.append(dispatched)
            start = match.end()
        self._pending = buffer[start:]
        return events

    def _line(self, line: str) -> ParsedEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry = self._block_retry = int(value)
        return None

    def _dispatch(self) -> ParsedEvent | None:
        data, event, retry_ms = self._data, self._event, self._block_retry
        self._data, self._event, self._block_retry = [], "", None
        if not data:
            return None
        return ParsedEvent(self.last_event_id, event or "message", "\n".join(data), retry_ms)
