"""The measured window: the worker's CPU, the load generator's, and the machine's background.

Every benchmark reports the same figures for its window, so that runs of different
benchmarks can be judged for noise the same way (see "How every benchmark is set up" in
bench/README.md). ``monitor`` samples the worker once a second within the window, and
``Profiler`` runs py-spy on it.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import machine
from bench.servers import RoyalServer


class Window:
    """Opened when the load starts, closed when it is over; everything in between counts."""

    def __init__(self, server: RoyalServer) -> None:
        self.server = server
        self._cores = machine.core_times()
        self._processes = machine.all_processes_cpu()
        self.server_cpu_start = machine.cpu_seconds(server.worker_pid)
        self._client_cpu = machine.own_cpu_seconds()
        self.started = time.perf_counter()
        self.started_at = time.time()
        self.seconds = self.server_cpu = self.client_cpu = 0.0
        self._cores_end: dict[int, machine.CoreTimes] = {}
        self._processes_end: dict[int, float] = {}

    def close(self) -> None:
        self.seconds = time.perf_counter() - self.started
        self.server_cpu = machine.cpu_seconds(self.server.worker_pid) - self.server_cpu_start
        self.client_cpu = machine.own_cpu_seconds() - self._client_cpu
        self._cores_end = machine.core_times()
        self._processes_end = machine.all_processes_cpu()

    def background(self) -> dict[str, Any]:
        """What else the machine did meanwhile.

        Other processes (a profiler included) skew every figure, so a noisy run should be
        repeated. Interrupt time is mostly the loopback network stack working for the
        benchmark itself, outside any process.
        """
        start, end = self._cores, self._cores_end
        return {
            "background_cpu_seconds": machine.other_processes_cpu(
                self._processes, self._processes_end, {os.getpid(), *self.server.pids()}
            ),
            "interrupt_seconds": {
                f"core{core}": end[core].interrupts - start[core].interrupts for core in sorted(end)
            },
            "steal_seconds": sum(end[core].steal - start[core].steal for core in end),
        }


@dataclass
class Sample:
    at: float  # seconds since the window started
    server_cpu: float
    rss: int
    finished: int  # tasks done


async def monitor(
    pid: int, started: float, tasks: list[asyncio.Task[None]], samples: list[Sample]
) -> None:
    """Append the worker's CPU and RSS, and how many tasks are done, once a second."""
    while True:
        await asyncio.sleep(1.0)
        samples.append(
            Sample(
                time.perf_counter() - started,
                machine.cpu_seconds(pid),
                machine.rss_bytes(pid),
                sum(task.done() for task in tasks),
            )
        )


class Profiler:
    """py-spy on the server worker for a while (the figures of that run are skewed)."""

    def __init__(self, path: str | None, pid: int, seconds: float) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        if path is None:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        output_format = "raw" if path.endswith(".txt") else "flamegraph"
        command = [spy, "record", "--pid", str(pid), "--output", path, "--format", output_format]
        command += ["--duration", str(max(1, math.ceil(seconds))), "--rate", "200", "--nonblocking"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self) -> None:
        if self.process is not None:
            _, errors = self.process.communicate(timeout=120)
            if self.process.returncode != 0:
                print(f"py-spy failed: {errors.decode(errors='replace')}", file=sys.stderr)
