"""``python -m bench soak``: tests/reliability at full scale, on demand (minutes, not seconds).

Parts (``--part``, repeatable; all by default):

- ``reconnects``: 4 workers, 10,000 SSE reconnects with Last-Event-ID while events flow:
  0 lost, 0 duplicated; each worker's tasks and file descriptors back to their baseline and
  its RSS within 5 % of it (the baseline is taken after a warm-up of half as many reconnects,
  once the garbage collector's young generation has reached its steady size).
- ``sigkill``: one of 4 workers killed with SIGKILL under load: 0 lost events, no job run twice
  to completion.
- ``outage``: PostgreSQL stopped for 30 s under load (really stopped with ``pg_ctlcluster``
  when it is installed and this is root, else cut off by a FaultProxy): only 503s with
  Retry-After meanwhile, each within 5 s, a success within 5 s of the restart, 0 lost events.
- ``sqlite``: 50 writers and 200 readers on the SQLite default for 60 s: no error, no
  "database is locked".

The exit status is 1 when any check failed. Stopping PostgreSQL stops every database of that
server: run it on a machine of your own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench import reliability_workloads as workloads
from bench.streams_compare import seed_operator
from royal.faults import FaultProxy
from royal.testing import LiveServer

PARTS = ("reconnects", "sigkill", "outage", "sqlite")
POSTGRES_URL = os.environ.get(
    "ROYAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
Check = tuple[str, bool]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "soak",
        help="the reliability workloads at full scale (minutes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--part", action="append", choices=PARTS, help="default: all")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--reconnects", type=int, default=10_000)
    parser.add_argument("--outage-seconds", type=float, default=30.0)
    parser.add_argument("--sqlite-seconds", type=float, default=60.0)
    parser.add_argument("--postgres", default=POSTGRES_URL, help="admin URL for the outage")
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on a timeout
    failed = 0
    for part in args.part or PARTS:
        print(f"== {part}", flush=True)
        checks = asyncio.run(RUNNERS[part](args))
        for name, passed in checks:
            print(f"  {'ok  ' if passed else 'FAIL'} {name}", flush=True)
            failed += not passed
    print(f"{failed} check(s) failed" if failed else "every check passed")
    return 1 if failed else 0


@asynccontextmanager
async def royal(workers: int, database_url: str, **env: str) -> AsyncIterator[_Royal]:
    server = LiveServer({"ROYAL_DATABASE_URL": database_url, **env}, workers=workers)
    await asyncio.to_thread(server.start)
    try:
        token = await seed_operator(database_url)
        yield _Royal(server, {"Authorization": f"Bearer {token}"}, token)
    finally:
        await asyncio.to_thread(server.close)


class _Royal:
    def __init__(self, server: LiveServer, headers: dict[str, str], token: str) -> None:
        self.server, self.headers, self.token, self.url = server, headers, token, server.url


def sqlite_file() -> str:
    folder = tempfile.mkdtemp(prefix="royal-soak-")
    return f"sqlite:///{Path(folder) / 'royal.sqlite3'}"


async def reconnects(args: argparse.Namespace) -> list[Check]:
    async with royal(args.workers, sqlite_file()) as live:

        def progress(done: int) -> None:
            print(f"  {done} reconnects", flush=True)

        async def storm(count: int) -> workloads.StormResult:
            return await workloads.reconnect_storm(
                live.url, live.token, live.headers, clients=100, reconnects=count, progress=progress
            )

        # Warm up to the steady state: until the collector's young generation (50,000 objects,
        # royal.server) first fills, RSS rises by a few MiB that later reconnects reuse.
        await storm(args.reconnects // 2)
        await asyncio.sleep(2)
        before = await workloads.worker_stats(live.url, live.headers, args.workers)
        result = await storm(args.reconnects)
        await asyncio.sleep(2)
        after = await workloads.worker_stats(live.url, live.headers, args.workers)
    print(
        f"  {result.reconnects} reconnects, {len(result.published)} events x 100 clients "
        f"in {result.seconds:.0f} s"
    )
    checks: list[Check] = [
        (f"{result.lost} lost, {result.duplicated} duplicated", result.lost == 0),
        ("in order", result.out_of_order == 0 and result.duplicated == 0),
        ("every worker answered before and after", before.keys() == after.keys()),
    ]
    for pid in sorted(before.keys() & after.keys()):
        was, now = before[pid]["process"], after[pid]["process"]
        growth = now["rss_bytes"] / was["rss_bytes"] - 1
        print(
            f"  worker {pid}: tasks {was['tasks']}->{now['tasks']}, fds {was['open_fds']}->"
            f"{now['open_fds']}, RSS {was['rss_bytes'] >> 20}->{now['rss_bytes'] >> 20} MiB "
            f"({growth:+.1%})"
        )
        checks.append((f"worker {pid}: tasks back", now["tasks"] <= was["tasks"]))
        checks.append((f"worker {pid}: fds back", now["open_fds"] <= was["open_fds"]))
        checks.append((f"worker {pid}: RSS growth {growth:+.1%} < 5 %", growth < 0.05))
    return checks


async def sigkill(args: argparse.Namespace) -> list[Check]:
    from royal.db import connect_database
    from royal.services import jobs

    env = {"ROYAL_JOB_LEASE_SECONDS": "3", "ROYAL_JOB_POLL_SECONDS": "0.1"}
    async with royal(args.workers, sqlite_file(), **env) as live:
        database_url = live.server.env["ROYAL_DATABASE_URL"]
        async with connect_database(database_url) as db:
            queued = {
                (await jobs.enqueue(db, "system.sleep", {"seconds": 0.2, "n": n})).id
                for n in range(300)
            }
        killed: list[int] = []

        async def kill_a_worker() -> None:
            killed.append(live.server.worker_pids()[0])
            os.kill(killed[0], signal.SIGKILL)

        run = await workloads.publish_through_a_disruption(
            live.url,
            live.token,
            live.headers,
            kill_a_worker,
            readers=100,
            events=3_000,
            disrupt_after=3.0,
            deliver_within=30.0,
        )
        async with connect_database(database_url) as db:
            done = await _eventually_async(
                lambda: _succeeded(db, jobs, len(queued)), timeout=60, wanted=len(queued)
            )
            completions = await _completions(db, queued)
    print(
        f"  killed {killed[0]}: {len(run.published)} events to 100 readers, {run.resumes} resumes"
    )
    return [
        ("every reader got every event", run.complete),
        ("in order, none twice", run.in_order),
        (f"{done} of {len(queued)} jobs succeeded", done == len(queued)),
        ("no job completed twice", set(completions.values()) <= {1}),
    ]


async def outage(args: argparse.Namespace) -> list[Check]:
    import asyncpg

    name = f"royal_soak_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.postgres)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    database_url = urlsplit(args.postgres)._replace(path=f"/{name}").geturl()
    target = urlsplit(args.postgres)
    cluster = _pg_cluster()
    proxy = None if cluster else FaultProxy(target.hostname or "127.0.0.1", target.port or 5432)
    try:
        served_url = proxy.start().url_for(database_url) if proxy else database_url
        async with royal(2, served_url) as live:
            load = workloads.RequestLoad(live.url, live.headers)
            received: list[int] = []
            async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http:
                reader = asyncio.create_task(
                    workloads.resuming_reader(live.url, live.token, received, http, [0])
                )
                running = asyncio.create_task(load.run())
                await asyncio.sleep(3)
                cut_at = time.monotonic()
                print(f"  stopping PostgreSQL for {args.outage_seconds:.0f} s", flush=True)
                try:
                    await asyncio.to_thread(_stop, cluster, proxy)
                    await asyncio.sleep(args.outage_seconds)
                finally:  # never leave the server stopped
                    restored_at = time.monotonic()
                    await asyncio.to_thread(_start, cluster, proxy)
                await _eventually(
                    lambda: all(load.first(k, restored_at, True) for k in ("read", "publish")), 60
                )
                await asyncio.sleep(3)
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
                delivered = await _eventually(lambda: set(load.published) <= set(received), 30)
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    finally:
        if proxy:
            proxy.close()
        admin = await asyncpg.connect(args.postgres)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    failures = [o for o in load.outcomes if o.status >= 300]
    back = [load.first(kind, restored_at, True) for kind in ("read", "publish")]
    slowest = max(o.finished - o.started for o in load.outcomes)
    print(
        f"  {len(load.outcomes)} requests, {len(failures)} failed while down; slowest answer "
        f"{slowest:.2f} s; {len(load.published)} events published"
    )
    return [
        ("only 503s with Retry-After", all(_is_retryable_503(o) for o in failures)),
        ("the outage was noticed", bool(failures)),
        ("every answer within 5 s", slowest < 5),
        ("first 503 within 5 s", bool(failures) and failures[0].finished - cut_at < 5),
        ("back within 5 s", all(o is not None and o.finished - restored_at < 5 for o in back)),
        ("every published event delivered", delivered),
    ]


async def sqlite(args: argparse.Namespace) -> list[Check]:
    from bench.mixed_load import run_load, unreadable

    async with royal(2, sqlite_file()) as live:
        result = await run_load(
            live.url, live.headers, duration=args.sqlite_seconds, writers=50, readers=200
        )
        missing = await unreadable(live.url, live.headers, result)
        output = live.server.output()
    failures = {key: n for key, n in result.statuses.items() if not 200 <= key[1] < 300}
    answered = sum(result.statuses.values())
    print(f"  {answered} answers in {result.seconds:.0f} s: {dict(result.statuses)}")
    return [
        (f"only 2xx answers ({failures or 'none other'})", not failures and not result.errors),
        ('no "database is locked"', "database is locked" not in output),
        ("every acknowledged write readable", not any(missing.values())),
    ]


RUNNERS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "reconnects": reconnects,
    "sigkill": sigkill,
    "outage": outage,
    "sqlite": sqlite,
}


def _is_retryable_503(outcome: workloads.Outcome) -> bool:
    return outcome.status == 503 and outcome.retry_after is not None


def _pg_cluster() -> list[str] | None:
    """``pg_ctlcluster VERSION main`` when this machine's PostgreSQL can be stopped by us."""
    if os.geteuid() != 0 or shutil.which("pg_ctlcluster") is None:
        return None
    versions = sorted(Path("/etc/postgresql").glob("*"))
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name, "main"]


def _stop(cluster: list[str] | None, proxy: FaultProxy | None) -> None:
    if cluster:
        subprocess.run([*cluster, "stop", "--mode", "fast"], check=True)
    elif proxy:
        proxy.cut()


def _start(cluster: list[str] | None, proxy: FaultProxy | None) -> None:
    if cluster:
        subprocess.run([*cluster, "start"], check=True)
    elif proxy:
        proxy.restore()


async def _eventually(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def _eventually_async(count: Callable[[], Any], *, timeout: float, wanted: int) -> int:
    deadline = time.monotonic() + timeout
    while (done := await count()) < wanted and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return int(done)


async def _succeeded(db: Any, jobs: Any, limit: int) -> int:
    return len(await jobs.select_jobs(db, status="succeeded", kind="system.sleep", limit=limit))


async def _completions(db: Any, ours: set[int]) -> dict[int, int]:
    import orjson

    from royal.streams import log

    counts: dict[int, int] = {}
    for event in await log.read_since(db, 0, topics=["jobs"], limit=1_000_000):
        job_id = orjson.loads(event.data)["id"]
        if event.event == "job.succeeded" and job_id in ours:
            counts[job_id] = counts.get(job_id, 0) + 1
    return counts
