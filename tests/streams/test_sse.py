"""SSE framing: what encode() writes, SSEParser reads back, however the bytes are chunked."""

from __future__ import annotations

import random

import pytest

from royal.streams import sse
from royal.streams.log import StoredEvent
from royal.streams.sse import ParsedEvent, SSEParser


def parse(stream: bytes, chunk_sizes: list[int] | None = None) -> list[ParsedEvent]:
    """Feed ``stream`` whole, or in chunks of the given sizes (repeated)."""
    parser = SSEParser()
    if chunk_sizes is None:
        return parser.feed(stream)
    events: list[ParsedEvent] = []
    position, turn = 0, 0
    while position < len(stream):
        size = chunk_sizes[turn % len(chunk_sizes)]
        events.extend(parser.feed(stream[position : position + size]))
        position, turn = position + size, turn + 1
    return events


def test_encode_writes_fields_in_a_fixed_order() -> None:
    frame = sse.encode('{"a": 1}', event="room.created", id=42, retry_ms=3000)
    assert frame == b'id: 42\nevent: room.created\nretry: 3000\ndata: {"a": 1}\n\n'


def test_encode_without_optional_fields() -> None:
    assert sse.encode("hello") == b"data: hello\n\n"


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        ("one\ntwo", ["one", "two"]),
        ("one\r\ntwo", ["one", "two"]),
        ("one\rtwo", ["one", "two"]),
        ("one\n\ntwo\n", ["one", "", "two", ""]),
        ("", [""]),
    ],
)
def test_every_line_of_data_gets_its_own_data_field(data: str, lines: list[str]) -> None:
    expected = "".join(f"data: {line}\n" for line in lines) + "\n"
    assert sse.encode(data) == expected.encode()


@pytest.mark.parametrize(
    ("data", "parsed"),
    [
        ("plain", "plain"),
        ('{"text": "caf\\u00e9"}', '{"text": "caf\\u00e9"}'),
        ("héllo ✓ 🎉 日本", "héllo ✓ 🎉 日本"),
        ("one\ntwo\nthree", "one\ntwo\nthree"),
        ("one\r\ntwo\rthree", "one\ntwo\nthree"),  # every break style comes back as \n
        ("", ""),
        ("\n", "\n"),
        (" leading space", " leading space"),
        (": not a comment", ": not a comment"),
    ],
)
def test_round_trip(data: str, parsed: str) -> None:
    frame = sse.encode(data, event="update", id=7)
    assert parse(frame) == [ParsedEvent("7", "update", parsed)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event": "a\nid: 1"}, "line break"),
        ({"event": "a\rb"}, "line break"),
        ({"id": "1\r\nevent: evil"}, "line break"),
        ({"id": "1\0"}, "NUL"),
        ({"retry_ms": -1}, "non-negative"),
        ({"retry_ms": True}, "non-negative"),
    ],
)
def test_header_injection_and_bad_values_are_refused(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sse.encode("x", **kwargs)  # type: ignore[arg-type]


def test_comment_and_retry_frames() -> None:
    assert sse.comment() == b": \n\n"
    assert sse.comment("ping") == b": ping\n\n"
    assert sse.comment("a\nb") == b": a\n: b\n\n"
    assert sse.retry(1500) == b"retry: 1500\n\n"
    with pytest.raises(ValueError):
        sse.retry(-5)


def test_parser_drops_comments_but_counts_them() -> None:
    parser = SSEParser()
    stream = sse.comment("ping") + sse.encode("x", id=1) + sse.comment("a\nb")
    assert parser.feed(stream) == [ParsedEvent("1", "message", "x")]
    assert parser.comments == 3


def test_retry_frames_dispatch_nothing_but_set_the_delay() -> None:
    parser = SSEParser()
    assert parser.feed(sse.retry(2500)) == []
    assert parser.retry == 2500
    assert parser.feed(sse.encode("x", retry_ms=100)) == [ParsedEvent(None, "message", "x", 100)]
    assert parser.feed(b"retry: soon\n\n") == [] and parser.retry == 100


def test_the_last_event_id_carries_over_like_eventsource() -> None:
    stream = sse.encode("a", id=1) + sse.encode("b") + b"id\ndata: c\n\n" + sse.encode("d", id=9)
    assert [(e.id, e.data) for e in parse(stream)] == [
        ("1", "a"),
        ("1", "b"),
        ("", "c"),
        ("9", "d"),
    ]


def test_whatwg_field_parsing() -> None:
    stream = (
        b"\xef\xbb\xbfdata:no space\n"  # a leading BOM is dropped; the space after : is optional
        b"data:  two spaces\n"  # only one space is removed
        b"data\n"  # a field without a colon has an empty value
        b"unknown: ignored\n"
        b"event: first\n"
        b"event: second\n"  # the last event name wins
        b"id: a\0b\n"  # an id with NUL is ignored
        b"\n"
        b"event: lonely\n\n"  # no data: nothing is dispatched, the event name resets
        b"data: after\n\n"
        b"data: never dispatched"  # no blank line at the end of the stream
    )
    assert parse(stream) == [
        ParsedEvent(None, "second", "no space\n two spaces\n"),
        ParsedEvent(None, "message", "after"),
    ]


def test_mixed_line_endings() -> None:
    stream = b"event: e\r\ndata: 1\rdata: 2\ndata: 3\r\n\r\rdata: 4\r\r\n"
    assert parse(stream) == [ParsedEvent(None, "e", "1\n2\n3"), ParsedEvent(None, "message", "4")]


def build_stream() -> tuple[bytes, list[ParsedEvent]]:
    """A stream exercising every feature, with the events a parser must get from it."""
    rng = random.Random(1234)
    alphabet = ["a", "Z", " ", ":", "é", "✓", "🎉", "\n", "\r\n", "\r", "{", '"']
    frames: list[bytes] = [sse.retry(1000)]
    expected: list[ParsedEvent] = []
    for n in range(60):
        data = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        event = rng.choice([None, "message", "room.updated", "é"])
        frames.append(sse.encode(data, event=event, id=n))
        parsed = data.replace("\r\n", "\n").replace("\r", "\n")
        expected.append(ParsedEvent(str(n), event or "message", parsed))
        if n % 7 == 0:
            frames.append(sse.comment("ping"))
    # Line endings other than LF, as another server may send them.
    frames.append(b"id: crlf\r\nevent: e\r\ndata: x\r\ndata: y\r\n\r\n")
    frames.append(b"id: cr\revent: e\rdata: x\r\r")
    expected += [ParsedEvent("crlf", "e", "x\ny"), ParsedEvent("cr", "e", "x")]
    return b"".join(frames), expected


def test_a_stream_fed_whole_in_bytes_or_in_random_chunks_gives_the_same_events() -> None:
    stream, expected = build_stream()
    assert parse(stream) == expected
    assert parse(stream, [1]) == expected
    rng = random.Random(99)
    for _ in range(20):
        assert parse(stream, [rng.randrange(1, 17) for _ in range(50)]) == expected


def test_a_split_at_every_byte_offset() -> None:
    stream, expected = build_stream()
    for offset in range(len(stream) + 1):
        parser = SSEParser()
        events = parser.feed(stream[:offset]) + parser.feed(stream[offset:])
        assert events == expected, offset


def test_encode_event_uses_the_row_id() -> None:
    stored = StoredEvent(5, "rooms", "room.created", '{"id": 1}', "2024-01-01T00:00:00.000Z")
    assert sse.encode_event(stored) == b'id: 5\nevent: room.created\ndata: {"id": 1}\n\n'


def test_headers() -> None:
    assert sse.HEADERS["Content-Type"] == "text/event-stream; charset=utf-8"
    assert sse.HEADERS["Cache-Control"] == "no-cache"
    assert sse.HEADERS["X-Accel-Buffering"] == "no"
    assert "Connection" not in sse.HEADERS
