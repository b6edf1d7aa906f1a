"""``python -m bench streams``: the raw WebSocket wire, and the smoke run end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import rawws
from bench.sse_load import Tally
from bench.streams_compare import CANDIDATES, Fanout, Target, targets
from bench.ws_load import WSSubscriber

REPO_ROOT = Path(__file__).resolve().parent.parent


def _server_frame(opcode: int, payload: bytes, *, final: bool = True) -> bytes:
    """A frame as a server sends it: unmasked, with the shortest length encoding."""
    first = (0x80 if final else 0) | opcode
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 1 << 16:
        return bytes((first, 126)) + size.to_bytes(2, "big") + payload
    return bytes((first, 127)) + size.to_bytes(8, "big") + payload


def _unmask(frame: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of a client frame, checking it is final and masked."""
    assert frame[0] & 0x80 and frame[1] & 0x80
    size, at = frame[1] & 0x7F, 2
    if size == 126:
        size, at = int.from_bytes(frame[2:4], "big"), 4
    elif size == 127:
        size, at = int.from_bytes(frame[2:10], "big"), 10
    mask, payload = frame[at : at + 4], frame[at + 4 :]
    assert len(payload) == size
    return frame[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_accept_value_is_the_rfc_example() -> None:
    assert rawws.accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_short_text_frame() -> None:
    parser = rawws.FrameParser()
    assert parser.feed(b"\x81\x05Hello") == [(rawws.TEXT, b"Hello")]


def test_frames_split_anywhere_come_out_whole_and_in_order() -> None:
    medium, large = b"m" * 300, b"L" * 70_000
    wire = (
        _server_frame(rawws.TEXT, b"one")
        + _server_frame(rawws.TEXT, medium)
        + _server_frame(rawws.BINARY, large)
        + _server_frame(rawws.TEXT, b"")
    )
    expected = [(rawws.TEXT, b"one"), (rawws.TEXT, medium), (rawws.BINARY, large), (1, b"")]
    for step in (1, 2, 3, 7, 126, 4096, len(wire)):
        parser = rawws.FrameParser()
        messages = []
        for at in range(0, len(wire), step):
            messages += parser.feed(wire[at : at + step])
        assert messages == expected, step
        assert parser.frames == 4


def test_fragments_are_joined_around_a_ping() -> None:
    wire = (
        _server_frame(rawws.TEXT, b"Hel", final=False)
        + _server_frame(rawws.PING, b"are you there")
        + _server_frame(rawws.CONTINUATION, b"lo, ", final=False)
        + _server_frame(rawws.CONTINUATION, b"world")
    )
    assert rawws.FrameParser().feed(wire) == [
        (rawws.PING, b"are you there"),
        (rawws.TEXT, b"Hello, world"),
    ]


@pytest.mark.parametrize(
    "wire",
    [
        b"\x81\x85abcd\x29\x07\x0f\x08\x0e",  # masked: only clients mask
        b"\xc1\x01x",  # RSV1 without a negotiated extension
        b"\x80\x01x",  # a continuation with nothing to continue
    ],
)
def test_protocol_errors_raise(wire: bytes) -> None:
    with pytest.raises(rawws.ProtocolError):
        rawws.FrameParser().feed(wire)


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65_535, 65_536])
def test_client_frames_are_masked_and_unmask_back(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    frame = rawws.client_frame(rawws.TEXT, payload, mask=b"\x01\x02\xf0\xff")
    assert _unmask(frame) == (rawws.TEXT, payload)


def test_event_envelope_of_royal_and_the_peers() -> None:
    message = (
        b'{"type":"event","topic":"alerts","event":"message","id":42,'
        b'"data":{"seq":3,"t":1.5,"pad":"x,\\"data\\":y"}}'
    )
    assert rawws.event_envelope(message) == (
        b"message",
        42,
        b'{"seq":3,"t":1.5,"pad":"x,\\"data\\":y"}',
    )
    with pytest.raises(ValueError):
        rawws.event_envelope(b'{"type":"event","topic":"metrics","event":"m","id":null,"data":1}')


def test_a_ws_subscriber_accounts_events_and_the_subscribe_answer() -> None:
    tally = Tally(subscribers=1, events=2, first=[9.0, 9.0], last=[-9.0, -9.0])
    subscriber = WSSubscriber(tally, "alerts")
    subscriber.arm(2)
    events = b"".join(
        _server_frame(
            rawws.TEXT,
            b'{"type":"event","topic":"alerts","event":"message","id":%d,'
            b'"data":{"seq":%d,"t":100.0}}' % (10 + seq, seq),
        )
        for seq in (0, 1)
    )
    subscriber.feed(_server_frame(rawws.TEXT, b'{"type":"subscribed","topics":["alerts"]}'), 0)
    assert subscriber.ready
    subscriber.feed(events, 100.25)
    assert (tally.received, tally.complete, tally.other_events) == (2, 1, 0)
    assert tally.latencies == [0.25, 0.25]


def test_fanout_variants_parse() -> None:
    assert Fanout.parse("1000x20, 10000x2") == [Fanout(1000, 20.0), Fanout(10000, 2.0)]
    assert Fanout(5000, 20.0).key == "W5 5000x20"
    with pytest.raises(SystemExit):
        Fanout.parse("1000")


def test_targets_compare_with_the_best_peer() -> None:
    report = {
        "medians": {
            "W7": {
                "royal": {"sse_bytes_per_connection": 30.0, "ws_bytes_per_connection": 50.0},
                "fastapi": {"sse_bytes_per_connection": 40.0, "ws_bytes_per_connection": 40.0},
                "flask-gevent": {"sse_bytes_per_connection": 20.0, "ws_bytes_per_connection": 60},
            }
        }
    }
    found = {what: (value, met) for what, value, _, met in targets(report)}
    sse = Target("W7", "royal", "sse_bytes_per_connection", "<=", 1.0, "best peer")
    ws = Target("W7", "royal", "ws_bytes_per_connection", "<=", 1.0, "best peer")
    assert found == {sse.describe(): (1.5, False), ws.describe(): (1.25, False)}


PEER_PACKAGES = ("fastapi", "gevent", "sse_starlette", "flask_sock", "uvicorn", "gunicorn")


def test_smoke_run_end_to_end(tmp_path: Path) -> None:
    """Every candidate delivers every event at the smoke's light load, and its memory per
    idle connection is measured (needs the ``bench`` extra: the peers' packages)."""
    missing = [name for name in PEER_PACKAGES if importlib.util.find_spec(name) is None]
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"the bench extra is not installed ({', '.join(missing)})")
    assert not missing, f"CI installs the bench extra; missing: {missing}"
    path = tmp_path / "streams.json"
    # A process of its own: the benchmark pins its threads to cores and starts servers.
    done = subprocess.run(
        [sys.executable, "-m", "bench", "streams", "--smoke", "--json", str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    medians = json.loads(path.read_text())["medians"]
    for name in CANDIDATES:
        for key in ("W5 50x20", "W6"):
            figures = medians[key][name]
            assert figures["deliveries"] > 0, (key, name)
            assert figures["deliveries"] == figures["expected_deliveries"], (key, name)
            assert figures["lost"] == 0, (key, name)
            assert figures["cpu_us_per_delivery"] > 0, (key, name)
        assert medians["W7"][name]["sse_bytes_per_connection"] > 0, name
        assert medians["W7"][name]["ws_bytes_per_connection"] > 0, name


def test_cores_are_chosen_from_the_whole_process_even_after_a_section_pinned_this_thread() -> None:
    from bench import machine

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: nothing is pinned")
    before = os.sched_getaffinity(0)
    chosen = machine.Cores.choose()
    try:
        machine.pin_thread(chosen.client)  # what the http section leaves behind
        assert machine.Cores.choose() == chosen
    finally:
        os.sched_setaffinity(0, before)
    assert chosen.server is not None and chosen.server != chosen.client
