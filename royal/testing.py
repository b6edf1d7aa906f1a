"""Helpers for testing Royal, and apps built on it, over real sockets.

``LiveServer`` runs ``royal serve`` (real Hypercorn, any number of workers) in a subprocess on a
socket it binds itself on 127.0.0.1, so there is no race for a free port and a restarted server
keeps the same address.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType


class LiveServer:
    """Royal under Hypercorn on 127.0.0.1; ``url`` is its base address."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        workers: int = 1,
        startup_timeout: float = 30.0,
        cwd: str | Path | None = None,
    ) -> None:
        self.env = {"ROYAL_ENV": "testing", **(env or {})}
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.cwd = cwd
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.set_inheritable(True)
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        handle, path = tempfile.mkstemp(prefix="royal-live-", suffix=".log")
        os.close(handle)
        self.log_path = Path(path)

    def start(self) -> LiveServer:
        """Start the server and wait until /healthz answers."""
        fd = self._socket.fileno()
        command = [sys.executable, "-m", "royal", "serve", "--bind", f"fd://{fd}"]
        command += ["--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env={**os.environ, **self.env},
                pass_fds=(fd,),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
            )
        self._wait_until_live()
        return self

    def _wait_until_live(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"royal serve exited with {self.process.returncode}:\n{self.output()}"
                )
            # Every worker logs "Running on" once it serves; wait for all of them.
            if self.output().count("Running on") >= self.workers and self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"royal serve did not answer within {self.startup_timeout} s:\n{self.output()}"
        )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal the server (SIGTERM: graceful) and wait for it; kill it if it hangs."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def restart(self) -> LiveServer:
        """Stop and start again on the same socket: clients reconnect to the same URL."""
        self.stop()
        return self.start()

    def output(self) -> str:
        """Everything the server printed so far (access log, errors)."""
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        self.stop()
        self._socket.close()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
