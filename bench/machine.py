"""The machine side of a benchmark: CPU pinning, per-process CPU and memory, versions.

Linux only (it reads /proc). Every benchmark in ``bench/`` uses the same layout on a machine
with two or more cores: the server under test on core 0, the load generator on core 1, so the
two never steal each other's time and the server's CPU seconds are its own.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
REPO_ROOT = Path(__file__).resolve().parent.parent
# The cores this process may use, before any benchmark pinned its thread to one of them: a
# section run after another (python -m bench runs http, then streams) must see them all.
ALLOWED_CORES = sorted(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Cores:
    """Which core the server and the load generator run on (None: not pinned)."""

    server: int | None
    client: int | None

    @classmethod
    def choose(cls) -> Cores:
        if len(ALLOWED_CORES) < 2:
            return cls(None, None)
        return cls(ALLOWED_CORES[0], ALLOWED_CORES[1])


def pin_thread(core: int | None) -> None:
    """Pin the calling thread; processes and threads it starts afterwards inherit the mask."""
    if core is not None:
        os.sched_setaffinity(0, {core})


def pin_process(pid: int, core: int | None) -> None:
    """Pin every existing thread of ``pid`` (sched_setaffinity acts on one thread id)."""
    if core is None:
        return
    for tid in threads(pid):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, {core})


def threads(pid: int) -> list[int]:
    return [int(name) for name in os.listdir(f"/proc/{pid}/task")]


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid``."""
    found: list[int] = []
    for tid in threads(pid):
        with contextlib.suppress(FileNotFoundError):
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
            found.extend(int(child) for child in text.split())
    return found


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat


def rss_bytes(pid: int) -> int:
    """Resident set size now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def own_cpu_seconds() -> float:
    """This process's CPU (every thread), from the same clock as ``cpu_seconds``."""
    times = os.times()
    return times.user + times.system


@dataclass(frozen=True)
class CoreTimes:
    """Seconds a core spent in processes, in interrupts (softirq: the network stack, mostly),
    and stolen by the hypervisor."""

    processes: float
    interrupts: float
    steal: float


def core_times() -> dict[int, CoreTimes]:
    """Per-core times since boot, from /proc/stat."""
    cores: dict[int, CoreTimes] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(value) for value in values]
        # user nice system idle iowait irq softirq steal guest guest_nice (guest is in user)
        cores[int(name[3:])] = CoreTimes(
            (ticks[0] + ticks[1] + ticks[2]) / CLOCK_TICKS,
            (ticks[5] + ticks[6]) / CLOCK_TICKS,
            ticks[7] / CLOCK_TICKS,
        )
    return cores


def all_processes_cpu() -> dict[int, float]:
    """CPU seconds of every process now; the difference of two snapshots, minus the
    benchmark's own processes, is what the rest of the machine did meanwhile."""
    found: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def other_processes_cpu(before: dict[int, float], after: dict[int, float], own: set[int]) -> float:
    """CPU seconds used between two snapshots by processes not in ``own`` (processes that
    both started and ended in between are not seen)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items() if pid not in own)


def raise_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (children inherit it); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"need {needed} file descriptors but the hard limit is {hard}: "
            f"raise it (ulimit -Hn) or use fewer subscribers"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


def calibrate(core: int | None, rounds: int = 7) -> float:
    """Milliseconds a fixed pure-Python workload takes on ``core`` (the best of ``rounds``).

    A virtual machine's speed drifts with its neighbours without any steal time showing; runs
    are comparable only when their calibrations are close.
    """
    previous = os.sched_getaffinity(0)
    pin_thread(core)
    try:
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            table: dict[int, int] = {}
            for i in range(200_000):
                table[i & 1023] = table.get(i & 1023, 0) + i * i
            best = min(best, time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, previous)
    return best * 1e3


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _git_revision() -> str | None:
    """HEAD, with ``+dirty`` when the server's code (royal/, sql/) has uncommitted changes."""
    revision = _git("rev-parse", "--short", "HEAD")
    if revision and _git("status", "--porcelain", "--", "royal", "sql", "hypercorn.toml"):
        revision += "+dirty"
    return revision


def environment(packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a reader needs to compare figures across machines and versions."""
    names = ("royal", "quart", "hypercorn", "h11", "uvloop", "aiosqlite", *packages)
    return {
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "packages": {name: _version(name) for name in names},
        "git_revision": _git_revision(),
    }
