"""Peer servers under test, shaped like ``servers.RoyalServer``: Flask on Gunicorn, FastAPI on
Uvicorn, and the slow upstream that ``GET /upstream`` calls.

Each runs one worker process on 127.0.0.1, pinned to the server core, started as its
documentation says to (``python -m gunicorn``, ``python -m uvicorn``) from the repository root,
in its own process group so that ``close()`` leaves nothing behind. Server settings follow
Royal's hypercorn.toml where both have one: keep-alive 75 s, backlog 2048, 10 s graceful
shutdown. Access logs are off for the peers while Royal's is on, which costs Royal CPU on every
request: if anything, the comparison favours the peers. The peers skip authentication too
(``bench/peers/__init__.py``); ``token`` is empty.

Unless ``env`` names a database (PEER_SQLITE_PATH or PEER_DATABASE_URL, seeded by the caller
with ``bench.peers.rows.seed_rows``), a peer reads a fresh SQLite file of ``rows`` rows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Literal, Self

from bench import machine
from bench.peers.rows import seed_rows
from bench.servers import hypercorn_worker

KEEP_ALIVE_SECONDS = 75  # as hypercorn.toml
GRACEFUL_SECONDS = 10  # as hypercorn.toml
BACKLOG = 2048  # as hypercorn.toml
ROWS = 1000

WorkerClass = Literal["sync", "gthread", "gevent"]


class PeerServer:
    """One server process group: start, wait until ``ready_path`` answers, pin, close."""

    name = "peer"
    ready_path = "/json"
    token = ""  # no authentication

    def __init__(self, env: dict[str, str] | None = None, *, core: int | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{self.name}-bench-")
        self.env = dict(env or {})
        self.core = core
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.worker_pid = 0
        self.log_path = Path(self._tmp.name) / "server.log"

    @property
    def url(self) -> str:
        assert self.port, "start() first"
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Anything the server needs before it starts."""

    def environment(self) -> dict[str, str]:
        """The variables the server gets on top of this process's."""
        return self.env

    def find_worker(self, timeout: float = 10.0) -> int:
        """The process that serves (by default the one started)."""
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> Self:
        self.prepare()
        self.port = _free_port()
        # The server inherits this thread's CPU mask at spawn; the caller re-pins itself after.
        machine.pin_thread(self.core)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                env={**os.environ, **self.environment()},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=machine.REPO_ROOT,
                start_new_session=True,  # its own process group, killed as one in close()
            )
        try:
            self._wait_until_ready(timeout)
            self.worker_pid = self.find_worker()
        except BaseException:
            self.close()
            raise
        for pid in self.pids():
            machine.pin_process(pid, self.core)
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.output()}"
                )
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as response:
                    if response.status == 200:
                        return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer within {timeout} s:\n{self.output()}")

    def pids(self) -> set[int]:
        """Every process of the server (a Gunicorn master and its worker)."""
        if self.process is None or self.process.poll() is not None:
            return set()
        parent = self.process.pid
        with contextlib.suppress(FileNotFoundError):
            return {parent, *machine.children(parent)}
        return set()

    def output(self) -> str:
        """Everything the server printed so far (error log; access logs are off)."""
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(errors="replace")
        return ""

    async def stream_counters(self) -> dict[str, int]:
        """The peers keep no broker counters."""
        return {}

    def close(self, timeout: float = GRACEFUL_SECONDS + 5) -> None:
        """SIGTERM to the whole group (graceful), then SIGKILL to whatever is left."""
        if self.process is not None:
            pids = self.pids()
            process, self.process = self.process, None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            # A Gunicorn master kills a worker that outlives the graceful timeout and exits
            # without waiting for it; make sure nothing of the group survives either way.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            _wait_until_dead(pids)
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _AppServer(PeerServer):
    """A peer app: it needs rows to read."""

    def __init__(
        self, env: dict[str, str] | None = None, *, core: int | None = None, rows: int = ROWS
    ) -> None:
        super().__init__(env, core=core)
        self.rows = rows

    def prepare(self) -> None:
        if not ({"PEER_SQLITE_PATH", "PEER_DATABASE_URL"} & self.env.keys()):
            path = str(Path(self._tmp.name) / "rows.sqlite3")
            seed_rows(path, self.rows)
            self.env["PEER_SQLITE_PATH"] = path


class FlaskGunicornServer(_AppServer):
    """``gunicorn "bench.peers.flask_app:create_app()"`` with one worker.

    ``sync`` and ``gthread`` serve the HTTP workloads (sync: one request at a time, no
    keep-alive); ``gevent`` also serves the SSE and WebSocket routes, up to
    ``worker_connections`` at once (Gunicorn's default of 1000 would cap the stream tests).
    With gthread the database pool gets one connection per thread.
    """

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        worker_class: WorkerClass = "gthread",
        threads: int = 8,
        worker_connections: int = 10_000,
        core: int | None = None,
        rows: int = ROWS,
    ) -> None:
        self.name = f"flask-{worker_class}"
        super().__init__(env, core=core, rows=rows)
        self.worker_class = worker_class
        # Gunicorn turns a sync worker with threads > 1 into gthread; gevent ignores threads.
        self.threads = threads if worker_class == "gthread" else 1
        self.worker_connections = worker_connections
        if worker_class == "gthread":
            self.env.setdefault("PEER_DB_POOL_SIZE", str(self.threads))

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", "1",
            "--worker-class", self.worker_class,
            "--threads", str(self.threads),
            "--worker-connections", str(self.worker_connections),
            "--keep-alive", str(KEEP_ALIVE_SECONDS),
            "--graceful-timeout", str(GRACEFUL_SECONDS),
            "--backlog", str(BACKLOG),
            "--no-control-socket",  # a socket in ~/.gunicorn, shared by every run otherwise
            "--error-logfile", "-",
            # No --access-logfile: Gunicorn's access log is off by default.
            "bench.peers.flask_app:create_app()",
        ]  # fmt: skip

    def find_worker(self, timeout: float = 10.0) -> int:
        """The one worker the Gunicorn master forked."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = machine.children(self.process.pid)
            if len(workers) == 1:
                return workers[0]
            time.sleep(0.05)
        raise RuntimeError(f"could not find the one Gunicorn worker of pid {self.process.pid}")

    def settings(self) -> dict[str, Any]:
        return {
            "server": "gunicorn",
            "workers": 1,
            "worker_class": self.worker_class,
            "threads": self.threads,
            "worker_connections": self.worker_connections,
            "keep_alive": KEEP_ALIVE_SECONDS,
            "access_log": False,
            "env": dict(self.env),
        }


class FastAPIUvicornServer(_AppServer):
    """``uvicorn --factory bench.peers.fastapi_app:create_app``: one process, uvloop, httptools
    and the websockets (sans-I/O) protocol, which is what ``uvicorn[standard]`` picks itself."""

    name = "fastapi"
    factory = "bench.peers.fastapi_app:create_app"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn",
            "--factory", self.factory,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--loop", "uvloop",
            "--http", "httptools",
            "--ws", "websockets-sansio",
            "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS),
            "--timeout-graceful-shutdown", str(GRACEFUL_SECONDS),
            "--backlog", str(BACKLOG),
            "--no-access-log",
        ]  # fmt: skip

    def settings(self) -> dict[str, Any]:
        return {
            "server": "uvicorn",
            "workers": 1,
            "loop": "uvloop",
            "http": "httptools",
            "ws": "websockets-sansio",
            "keep_alive": KEEP_ALIVE_SECONDS,
            "access_log": False,
            "env": dict(self.env),
        }


class _RoyalApp(_AppServer):
    """Royal's app with the workload routes (bench/peers/royal_app.py), on the seeded rows'
    database: the SQLite file, or PEER_DATABASE_URL's PostgreSQL."""

    def environment(self) -> dict[str, str]:
        database = self.env.get("PEER_DATABASE_URL") or f"sqlite:///{self.env['PEER_SQLITE_PATH']}"
        return {"ROYAL_ENV": "testing", "ROYAL_DATABASE_URL": database, **self.env}


class RoyalHypercornServer(_RoyalApp):
    """Royal as production runs it: ``royal serve`` (Hypercorn with the repository's
    hypercorn.toml: the uvloop worker, access log on; Royal's worker set-up, its access
    logger and its drain), one worker process, with the workload routes' app."""

    name = "royal"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "royal", "serve",
            "--app", "bench.peers.royal_app:create_app()",
            "--config", "hypercorn.toml",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", "1",
        ]  # fmt: skip

    def find_worker(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        return hypercorn_worker(self.process.pid, timeout)

    def settings(self) -> dict[str, Any]:
        return {
            "server": "royal serve (hypercorn)",
            "config": "hypercorn.toml",
            "workers": 1,
            "env": self.env,
        }


class RoyalUvicornServer(_RoyalApp, FastAPIUvicornServer):
    """The same Royal app on Uvicorn, exactly as FastAPI runs: no code change."""

    name = "royal-uvicorn"
    factory = "bench.peers.royal_app:create_app"


class UpstreamServer(PeerServer):
    """``python -m bench.peers.upstream``: answers every request 50 ms later. Give the peers
    ``{"PEER_UPSTREAM_URL": upstream.url}``; pin it off the server's core."""

    name = "upstream"
    ready_path = "/"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.peers.upstream"]

    def environment(self) -> dict[str, str]:
        return {**self.env, "PEER_UPSTREAM_URL": self.url}

    def settings(self) -> dict[str, Any]:
        return {"server": "asyncio (standard library)", "delay_ms": 50}


def _free_port() -> int:
    """A port nothing listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _wait_until_dead(pids: set[int], timeout: float = 5.0) -> None:
    """Until every process in ``pids`` has exited (a zombie awaiting its reaper counts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_dead(pid) for pid in pids):
            return
        time.sleep(0.02)


def _dead(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"
