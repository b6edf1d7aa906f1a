"""Servers under test. Each one starts on 127.0.0.1, pinned to the server core, and names the
one worker process whose CPU and memory a benchmark measures.

Royal runs as in production (``royal serve`` with the repository's hypercorn.toml: the uvloop
worker class, access log on) through ``royal.testing.LiveServer``, on a fresh SQLite file.
Peers (Flask + Gunicorn, FastAPI + Uvicorn) belong here too, with the same attributes.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import machine
from royal.db import connect_database
from royal.passwords import HashParameters, Passwords
from royal.services import tokens, users
from royal.testing import LiveServer

BENCH_USER = "bench-operator"
STREAM_COUNTERS = ("published", "dispatched", "delivered", "catchups", "replayed", "resets")


class RoyalServer:
    """``royal serve --workers 1`` on a fresh SQLite file, plus an operator's bearer token.

    ``env`` adds ROYAL_* settings (ROYAL_ENV=testing and ROYAL_DATABASE_URL are set here).
    """

    name = "royal"

    def __init__(self, env: dict[str, str] | None = None, *, core: int | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="royal-bench-")
        self.database_path = Path(self._tmp.name) / "royal.sqlite3"
        self.database_url = f"sqlite:///{self.database_path}"
        self.env = {"ROYAL_DATABASE_URL": self.database_url, **(env or {})}
        self.core = core
        self.live: LiveServer | None = None
        self.worker_pid = 0
        self.token = ""

    @property
    def url(self) -> str:
        assert self.live is not None
        return self.live.url

    @property
    def port(self) -> int:
        assert self.live is not None
        return self.live.port

    def start(self) -> RoyalServer:
        # The server inherits this thread's CPU mask at spawn; the caller re-pins itself after.
        machine.pin_thread(self.core)
        self.live = LiveServer(self.env, workers=1, cwd=machine.REPO_ROOT).start()
        assert self.live.process is not None
        self.worker_pid = hypercorn_worker(self.live.process.pid)
        machine.pin_process(self.live.process.pid, self.core)
        machine.pin_process(self.worker_pid, self.core)
        self.token = asyncio.run(self._seed_user(BENCH_USER, "operator"))
        return self

    def seed_user(self, username: str, role: users.Role = "viewer") -> str:
        """Another user (created if missing) and a bearer token for it; call after start()."""
        return asyncio.run(self._seed_user(username, role))

    async def _seed_user(self, username: str, role: users.Role) -> str:
        """A user and a bearer token, written straight into the database (no HTTP)."""
        password_hash = Passwords(
            HashParameters(time_cost=2, memory_cost=19456, parallelism=1)
        ).hash_sync(secrets.token_urlsafe(16))
        database = connect_database(self.database_url)
        async with database:
            user = await users.select_user_by_name(database, username)
            if user is None:
                user = await users.insert_user(database, username, password_hash, role)
            issued = await tokens.issue_token(database, user.id, "access", 24 * 3600)
        return issued.token

    async def stream_counters(self) -> dict[str, int]:
        """The broker's counters now (``GET /streams``); a run reports the difference of two."""
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30) as http:
            response = await http.get("/streams")
        counters: dict[str, int] = response.json().get("counters", {})
        return {key: counters.get(key, 0) for key in STREAM_COUNTERS}

    def pids(self) -> set[int]:
        """Every process of the server (supervisor, workers, multiprocessing's helpers)."""
        if self.live is None or self.live.process is None:
            return set()
        parent = self.live.process.pid
        return {parent, *machine.children(parent)}

    def settings(self) -> dict[str, Any]:
        return {"workers": 1, "config": "hypercorn.toml", "env": dict(self.env)}

    def output(self) -> str:
        return self.live.output() if self.live is not None else ""

    def close(self) -> None:
        if self.live is not None:
            self.live.close()
            self.live = None
        self._tmp.cleanup()

    def __enter__(self) -> RoyalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def hypercorn_worker(parent: int, timeout: float = 10.0) -> int:
    """The worker Hypercorn spawned (not multiprocessing's resource tracker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        commands = {pid: machine.cmdline(pid) for pid in machine.children(parent)}
        workers = [
            pid
            for pid, command in commands.items()
            if "spawn_main" in command and "resource_tracker" not in command
        ]
        if len(workers) == 1:
            return workers[0]
        time.sleep(0.05)
    raise RuntimeError(f"could not find the one Hypercorn worker of pid {parent}")
