"""Run Royal's workers under Hypercorn, with a drain on shutdown and respawn on crash.

Hypercorn tells an app about shutdown only after its graceful timeout, when open SSE and
WebSocket streams have already been cut (and on Python 3.12+ it may wait on them forever,
hypercorn#308). Royal's workers therefore get their own shutdown trigger: on SIGTERM/SIGINT
each worker first ends its streams (SSE with a short retry hint, WebSockets with 1001), then
lets Hypercorn stop accepting and finish in-flight requests. A worker that dies unexpectedly
(a crash, the OOM killer, SIGKILL) is started again; its jobs' leases let another take over.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.run import worker_serve
from hypercorn.asyncio.task_group import _handle as hypercorn_app_call
from hypercorn.config import Config, Sockets
from prometheus_client import multiprocess
from quart import Quart
from quart.cli import locate_app, prepare_import

from royal.config import ConfigError

logger = logging.getLogger("royal.server")
RESPAWN_DELAY_SECONDS = 1.0
CUT_MARGIN_SECONDS = 0.5
# The coroutine Hypercorn's asyncio worker runs the app in, one task per request.
_HYPERCORN_APP_CALL = hypercorn_app_call.__code__


def serve(config: Config) -> int:
    """Start ``config.workers`` worker processes and supervise them until a signal."""
    with metrics_directory():
        return _supervise(config)


@contextmanager
def metrics_directory() -> Iterator[None]:
    """PROMETHEUS_MULTIPROC_DIR for the workers (set before they start, so each writes its
    metrics there and a scrape on any of them adds them all up): the operator's, emptied of a
    previous run's files, or a temporary one removed at the end."""
    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    folder = Path(chosen or tempfile.mkdtemp(prefix="royal-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    try:
        yield
    finally:
        if chosen is None:
            shutil.rmtree(folder, ignore_errors=True)
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _supervise(config: Config) -> int:
    sockets = config.create_sockets()
    context = get_context("spawn")
    shutdown = context.Event()
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True
        shutdown.set()

    for name in ("SIGINT", "SIGTERM"):
        signal.signal(getattr(signal, name), _stop)

    def _start() -> BaseProcess:
        process = context.Process(
            target=run_worker,
            kwargs={"config": config, "sockets": sockets, "shutdown_event": shutdown},
        )
        process.start()
        return process

    processes = {_start(): time.monotonic() for _ in range(max(1, config.workers))}
    exit_code = 0
    quick_failures = 0
    while processes:
        wait([process.sentinel for process in processes], timeout=1.0)
        for process in [p for p in processes if not p.is_alive()]:
            started = processes.pop(process)
            if process.pid is not None:
                # Its live gauges stop counting.
                multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
            if process.exitcode in (0, None):
                continue
            exit_code = 1
            # A worker that dies at once (bad config, unreachable code) would die again.
            quick_failures = quick_failures + 1 if time.monotonic() - started < 10 else 1
            if stopping or quick_failures >= 3:
                _stop()
                continue
            logger.error(
                "worker %s exited with %s; starting another", process.pid, process.exitcode
            )
            time.sleep(RESPAWN_DELAY_SECONDS)
            processes[_start()] = time.monotonic()
            exit_code = 0
        if stopping:
            deadline = time.monotonic() + config.graceful_timeout + 5
            for process in processes:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join()
                    exit_code = 1
            break
    for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
        sock.close()
    return exit_code


def load_app(path: str) -> Quart:
    """The app that ``path`` names: ``module:app``, ``module:factory()`` or ``module``
    (then its ``app`` or ``create_app``), found the way ``quart --app`` finds one."""
    module, _, name = path.partition(":")
    app = locate_app(prepare_import(module), name or None)  # type: ignore[arg-type]
    if not isinstance(app, Quart):
        raise ConfigError(f"--app {path!r} is not a Quart app or a factory of one")
    return app


def cut_requests() -> None:
    """Cancel the requests still running at the graceful bound, so the worker can exit: each
    gets Hypercorn's 500 (or its connection closed, if the response had started), and its
    connection closes, as every connection does once the worker is terminating."""
    for task in asyncio.all_tasks():
        if getattr(task.get_coro(), "cr_code", None) is _HYPERCORN_APP_CALL:
            task.cancel()


def set_user_timeout(sockets: Sockets, seconds: float) -> None:
    """Set TCP_USER_TIMEOUT (Linux) to ``seconds`` on the listening TCP sockets; every
    connection accepted from them inherits it.

    A client that vanishes (its machine switched off, its network gone: no FIN, no RST) would
    otherwise hold its stream for the kernel's retransmission limit, about 15 minutes: each
    heartbeat lands in the socket's send buffer and the write succeeds. With the timeout at one
    heartbeat, the kernel errors the connection once data has gone unacknowledged that long,
    so a vanished client's stream is freed within two heartbeats. A client that leaves its
    receive window shut (reads nothing at all) for that long is disconnected the same way.
    Called in each worker, which has the app's config; the sockets are shared, so it is the
    same setting each time.
    """
    if not hasattr(socket, "TCP_USER_TIMEOUT"):
        return
    milliseconds = max(1, round(seconds * 1000))
    for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)


def run_worker(config: Config, sockets: Sockets, shutdown_event: EventType) -> None:
    """One worker process: build the app, serve until the shutdown event, drain first."""
    from royal import hypercorn_fixes
    from royal.streams.extension import drain

    hypercorn_fixes.apply()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    app = load_app(config.application_path)
    set_user_timeout(sockets, app.config["STREAM_HEARTBEAT_SECONDS"])
    # Thousands of long-lived streams make CPython's default GC thresholds trigger full
    # collections that free nothing and took half a worker's CPU in the SSE benchmark
    # (bench/README.md). Freeze what start-up built and collect young objects less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 1000)

    async def shutdown_trigger() -> None:
        # SIGTERM sent to the worker itself (a process-group kill) drains too.
        terminated = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminated.set)
        while not (shutdown_event.is_set() or terminated.is_set()):
            await asyncio.sleep(0.1)
        await drain(app, timeout=min(2.0, config.graceful_timeout))
        # Hypercorn now stops accepting and gives in-flight requests graceful_timeout; on
        # Python 3.12+ it first waits for every connection to close, however long that takes.
        # Royal ends what is left a little before the bound, so that Hypercorn's own cut (which
        # cancels whole connections, noisily on 3.11) finds nothing left to do.
        cut_after = max(0.0, config.graceful_timeout - CUT_MARGIN_SECONDS)
        asyncio.get_running_loop().call_later(cut_after, cut_requests)

    loop_factory = None
    if config.worker_class == "uvloop" and sys.platform != "win32":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(
            worker_serve(
                ASGIWrapper(app), config, sockets=sockets, shutdown_trigger=shutdown_trigger
            )
        )
