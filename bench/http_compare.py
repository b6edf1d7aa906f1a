"""``python -m bench http``: the HTTP workloads side by side, Royal against its peers.

W1 GET a small JSON object; W2 read one row of SQLite (W2pg: of PostgreSQL, in a database the
run creates and drops); W3 a validated POST; W4 an endpoint that awaits a 50 ms upstream call,
at 256 concurrent clients. The candidates:

- royal: Royal's app on Hypercorn, as ``royal serve`` runs it (hypercorn.toml, access log on);
- royal-uvicorn: the same ASGI app on Uvicorn, unchanged;
- flask-sync, flask-gthread: the Flask peer on Gunicorn's sync worker and its threaded one;
- fastapi: the FastAPI peer on Uvicorn.

Every candidate is started once with one worker process, pinned to the server core; wrk runs on
the client core (the 50 ms upstream too). Each round runs every workload against every
candidate, in an order that rotates from round to round, so a machine that drifts (a virtual
machine's speed can change within minutes) drifts for all of them alike. The figures are the
medians of the rounds. ``--results`` writes them, with the targets of issue 8, as Markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import statistics
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bench import machine, wrk
from bench.harness import add_options, option

if TYPE_CHECKING:
    from bench.peer_servers import PeerServer

CANDIDATES = ("royal", "royal-uvicorn", "flask-sync", "flask-gthread", "fastapi")


def start_candidate(name: str, env: dict[str, str], core: int | None) -> PeerServer:
    """The server of one candidate, not yet started. The peers' packages (the ``bench``
    extra) are imported only here, so the other benchmarks run without them."""
    from bench import peer_servers as p

    if name == "royal":
        return p.RoyalHypercornServer(env, core=core)
    if name == "royal-uvicorn":
        return p.RoyalUvicornServer(env, core=core)
    if name == "flask-sync":
        return p.FlaskGunicornServer(env, worker_class="sync", core=core)
    if name == "flask-gthread":
        # Threads for an I/O-bound service: Gunicorn's advice is 2-4 per core; W4 waits 50 ms
        # a call, so more threads serve more; 32 keeps the GIL contention modest.
        return p.FlaskGunicornServer(env, worker_class="gthread", threads=32, core=core)
    if name == "fastapi":
        return p.FastAPIUvicornServer(env, core=core)
    raise SystemExit(f"unknown candidate {name!r}; known: {', '.join(CANDIDATES)}")


@dataclasses.dataclass(frozen=True)
class Workload:
    key: str
    title: str
    path: str
    connections: int
    script: str = ""  # Lua for wrk: a method, a body, a request() of its own
    database: str = "sqlite"  # the servers' database: "sqlite" or "postgres"


RANDOM_ROW = 'request = function() return wrk.format("GET", "/rows/" .. math.random(1000)) end\n'
WORKLOADS = (
    Workload("W1", "GET small JSON", "/json", 64),
    Workload("W2", "read one row (SQLite)", "/rows/1", 64, RANDOM_ROW),
    Workload("W2pg", "read one row (PostgreSQL)", "/rows/1", 64, RANDOM_ROW, "postgres"),
    Workload(
        "W3",
        "validated POST",
        "/validated",
        64,
        'wrk.method = "POST"\n'
        'wrk.body = \'{"name": "widget", "count": 3, "tags": ["a", "b"]}\'\n'
        'wrk.headers["Content-Type"] = "application/json"\n',
    ),
    Workload("W4", "50 ms upstream call, 256 clients", "/upstream", 256),
)

# (workload, candidate, reference, at least): the targets of issue 8 that these workloads show.
TARGETS = (
    ("W1", "royal", "flask-sync", 1.0),
    ("W2", "royal", "flask-sync", 1.0),
    ("W2pg", "royal", "flask-sync", 1.0),
    ("W4", "royal", "flask-gthread", 5.0),
    ("W4", "royal", "fastapi", 1.0),
    ("W1", "royal-uvicorn", "fastapi", 0.8),
)


@dataclasses.dataclass
class Params:
    rounds: int = option(3, help="rounds; each runs every workload on every candidate")
    seconds: float = option(5.0, help="wrk's duration of one measurement")
    warmup: float = option(2.0, help="an unmeasured run per candidate and workload first")
    candidates: str = option(
        ",".join(CANDIDATES), help="comma-separated, of: " + ", ".join(CANDIDATES)
    )
    workloads: str = option(",".join(w.key for w in WORKLOADS), help="comma-separated W1..W4")
    postgres_url: str = option(
        os.environ.get("ROYAL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL server for W2pg (a database is created there and dropped after); "
        "W2pg is skipped when it cannot be reached",
    )
    results: str = option("", help="write the Markdown report here (e.g. bench/RESULTS.md)")
    json: str = option("", help="write every measurement as JSON")
    smoke: bool = False


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "http",
        help="W1-W4 against Royal, Flask+Gunicorn and FastAPI+Uvicorn",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser, Params)
    parser.add_argument("--smoke", action="store_true", help="one second per run, for CI")
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    params = Params(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Params)})
    if params.smoke:
        params = dataclasses.replace(params, rounds=1, seconds=1.0, warmup=0.0)
    if wrk.available() is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    report = measure(params)
    print(table(report))
    if params.json:
        Path(params.json).write_text(json.dumps(report, indent=2) + "\n")
    if params.results:
        Path(params.results).write_text(markdown(report))
        print(f"wrote {params.results}")
    errors = {key: n for key, n in report["errors"].items() if n}
    if errors:
        print(f"FAILED: requests with errors: {errors}", file=sys.stderr)
        return 1
    return 0


def measure(params: Params) -> dict[str, Any]:
    names = [name for name in params.candidates.split(",") if name]
    unknown = set(names) - set(CANDIDATES)
    if unknown:
        raise SystemExit(f"unknown candidates: {', '.join(sorted(unknown))}")
    workloads = [w for w in WORKLOADS if w.key in params.workloads.split(",")]
    cores = machine.Cores.choose()
    environment = machine.environment(("flask", "gunicorn", "fastapi", "uvicorn", "starlette"))
    environment["calibration_ms"] = {
        "server_core": machine.calibrate(cores.server),
        "client_core": machine.calibrate(cores.client),
    }
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        w.key: {name: [] for name in names} for w in workloads
    }
    with ExitStack() as stack:
        from bench.peer_servers import UpstreamServer

        upstream = stack.enter_context(UpstreamServer(core=cores.client))
        envs = {"sqlite": {"PEER_UPSTREAM_URL": upstream.url}}
        if any(w.database == "postgres" for w in workloads):
            database = stack.enter_context(scratch_postgres(params.postgres_url))
            if database is None:
                workloads = [w for w in workloads if w.database != "postgres"]
            else:
                envs["postgres"] = {**envs["sqlite"], "PEER_DATABASE_URL": database}
        servers = {
            (db, name): stack.enter_context(start_candidate(name, dict(env), cores.server))
            for db, env in envs.items()
            for name in names
        }
        machine.pin_thread(cores.client)
        for workload in workloads:
            if params.warmup > 0:
                for name in names:
                    _wrk(servers[workload.database, name], workload, params.warmup, cores.client)
        for round_ in range(params.rounds):
            for workload in workloads:
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    server = servers[workload.database, name]
                    result = _wrk(server, workload, params.seconds, cores.client)
                    samples[workload.key][name].append(dataclasses.asdict(result))
                    print(
                        f"round {round_ + 1}/{params.rounds} {workload.key} {name:>14}: "
                        f"{result.requests_per_second:10.1f} req/s, p99 {result.p99_ms:.1f} ms",
                        flush=True,
                    )
        settings = {f"{name} ({db})": server.settings() for (db, name), server in servers.items()}
    environment["calibration_ms"]["server_core_after"] = machine.calibrate(cores.server)
    return {
        "benchmark": "http",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "parameters": dataclasses.asdict(params),
        "environment": environment,
        "cores": {"server": cores.server, "client": cores.client},
        "servers": settings,
        "workloads": {w.key: dataclasses.asdict(w) for w in workloads},
        "samples": samples,
        "medians": {
            key: {name: _medians(runs) for name, runs in by_name.items()}
            for key, by_name in samples.items()
        },
        "errors": {
            f"{key}/{name}": sum(run["errors"] for run in runs)
            for key, by_name in samples.items()
            for name, runs in by_name.items()
        },
    }


@contextmanager
def scratch_postgres(url: str) -> Iterator[str | None]:
    """A new database on ``url``'s server for the run, seeded with the rows, dropped after;
    None (and a warning) when the server cannot be reached."""
    import psycopg
    from psycopg import sql

    from bench.peer_servers import ROWS
    from bench.peers.rows import seed_rows

    name = f"royal_bench_{os.getpid()}"
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        print(f"W2pg skipped: PostgreSQL at {url} is not reachable ({error})", file=sys.stderr)
        yield None
        return
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            database_url = urlsplit(url)._replace(path=f"/{name}").geturl()
            seed_rows(database_url, ROWS)
            yield database_url
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _wrk(server: PeerServer, workload: Workload, seconds: float, core: int | None) -> wrk.WrkResult:
    return wrk.run(
        server.url + workload.path,
        script=workload.script,
        connections=workload.connections,
        seconds=seconds,
        core=core,
    )


def _medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {
        field: statistics.median(run[field] for run in runs)
        for field in ("requests_per_second", "p50_ms", "p99_ms")
    }


def targets(report: dict[str, Any]) -> list[tuple[str, float | None, float, bool | None]]:
    """Each target that this run measured both sides of: (what, ratio, at least, met)."""
    found = []
    for key, name, reference, least in TARGETS:
        medians = report["medians"].get(key, {})
        what = f"{key}: {name} / {reference} >= {least:g}x"
        if name not in medians or reference not in medians:
            continue
        ours = medians[name]["requests_per_second"]
        theirs = medians[reference]["requests_per_second"]
        ratio = ours / theirs if theirs else None
        found.append((what, ratio, least, None if ratio is None else ratio >= least))
    return found


def table(report: dict[str, Any]) -> str:
    lines = []
    for key, by_name in report["medians"].items():
        workload = report["workloads"][key]
        lines.append(f"{key} {workload['title']} ({workload['connections']} connections)")
        best = max(m["requests_per_second"] for m in by_name.values()) or 1.0
        for name, m in sorted(by_name.items(), key=lambda item: -item[1]["requests_per_second"]):
            lines.append(
                f"  {name:>14} {m['requests_per_second']:10.1f} req/s  p50 {m['p50_ms']:7.2f} ms"
                f"  p99 {m['p99_ms']:8.2f} ms  {m['requests_per_second'] / best:5.2f}x best"
            )
    for what, ratio, _, met in targets(report):
        shown = "-" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"target {what}: {shown} {'met' if met else 'NOT met'}")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    e = report["environment"]
    p = report["parameters"]
    calibration = e["calibration_ms"]
    out = [
        "# HTTP workloads: Royal against Flask+Gunicorn and FastAPI+Uvicorn",
        "",
        f"Written by `python -m bench http --results bench/RESULTS.md` on {report['date']}, "
        f"git {e['git_revision']}. {p['rounds']} interleaved rounds of {p['seconds']:g} s per "
        f"candidate and workload; the figures are their medians. wrk (1 thread) on core "
        f"{report['cores']['client']}, every server (one worker process) on core "
        f"{report['cores']['server']}.",
        "",
        f"Machine: {e['cores']} cores, {e['cpu_model']}; Python {e['python']}. Calibration "
        f"(ms, lower is faster): server core {calibration['server_core']:.1f} -> "
        f"{calibration['server_core_after']:.1f}, client core {calibration['client_core']:.1f}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in e["packages"].items() if v),
        "",
    ]
    for key, by_name in report["medians"].items():
        w = report["workloads"][key]
        out += [
            f"## {key}: {w['title']} (`{w['path']}`, {w['connections']} connections)",
            "",
            "| candidate | req/s | p50 ms | p99 ms | vs flask-sync | vs fastapi |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        flask = by_name.get("flask-sync", {}).get("requests_per_second")
        fastapi = by_name.get("fastapi", {}).get("requests_per_second")
        for name, m in sorted(by_name.items(), key=lambda item: -item[1]["requests_per_second"]):
            rate = m["requests_per_second"]
            out.append(
                f"| {name} | {rate:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                f"{_ratio(rate, flask)} | {_ratio(rate, fastapi)} |"
            )
        out.append("")
    out += ["## Targets (issue 8) these workloads measure", ""]
    for what, ratio, _, met in targets(report):
        shown = "-" if ratio is None else f"{ratio:.2f}x"
        out.append(f"- {what}: **{shown}**, {'met' if met else 'not met'}")
    out += ["", "Every server's settings are in the JSON (`--json`).", ""]
    return "\n".join(out)


def _ratio(ours: float, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"
