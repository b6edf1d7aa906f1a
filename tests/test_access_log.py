"""Royal's access logger writes what Hypercorn's own would, for every atom of the format."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest
from hypercorn.logging import AccessLogAtoms

from royal.access_log import LazyAtoms
from royal.testing import LiveServer

SCOPE: dict[str, Any] = {
    "type": "http",
    "http_version": "1.1",
    "method": "POST",
    "scheme": "https",
    "path": "/api/alerts",
    "query_string": b"limit=5",
    "client": ("10.0.0.7", 51234),
    "headers": [(b"user-agent", b"curl/8"), (b"referer", b"https://x/"), (b"x-tag", b"t1")],
}
RESPONSE: Any = {"status": 201, "headers": [(b"content-length", b"42"), (b"x-request-id", b"r1")]}
FORMAT = (
    '%(h)s %(l)s "%(r)s" "%(R)s" %(s)s %(st)s %(S)s %(m)s %(U)s %(Uq)s %(q)s %(H)s '
    '%(b)s %(B)s "%(f)s" "%(a)s" %(T)s %(D)s %(L)s %(p)s %({x-tag}i)s %({X-Request-ID}o)s '
    "%({missing}i)s %({royal_test_var}e)s %(nonsense)s"
)


@pytest.mark.parametrize("response", [RESPONSE, None])
def test_every_atom_as_hypercorn_writes_it(response: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROYAL_TEST_VAR", "set")
    ours = FORMAT % LazyAtoms(SCOPE, response, 0.0123)  # type: ignore[arg-type]
    theirs = FORMAT % AccessLogAtoms(SCOPE, response, 0.0123)  # type: ignore[arg-type]
    assert ours == theirs
    assert "10.0.0.7:51234" in ours and " set " in ours


def test_a_mapping_logging_accepts() -> None:
    atoms = LazyAtoms(SCOPE, RESPONSE, 0.5)  # type: ignore[arg-type]
    assert len(atoms) > 0 and "h" in atoms and atoms["s"] == "201"
    assert re.fullmatch(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", atoms["t"])


async def test_royal_serve_logs_requests_of_the_app_it_was_given() -> None:
    """``royal serve --app`` serves another factory (the benchmark's), with this logger."""
    server = await asyncio.to_thread(LiveServer(app="bench.peers.royal_app:create_app()").start)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            answer = await client.get("/json", headers={"User-Agent": "probe/1"})
        assert answer.json()["backend"] == "royal"
        deadline = time.monotonic() + 5
        while '"GET /json 1.1" 200' not in server.output() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        line = next(x for x in server.output().splitlines() if '"GET /json 1.1"' in x)
        assert re.search(r'\] 127\.0\.0\.1:\d+ - "GET /json 1\.1" 200 45 \d+us "probe/1"$', line)
    finally:
        await asyncio.to_thread(server.close)
