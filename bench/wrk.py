"""wrk (Debian's package) as the HTTP load generator: one run, its figures parsed.

wrk is C and uses a fraction of the CPU of any Python client, so on the client core it never
becomes the bottleneck the server is measured against. Each workload's request is a short Lua
script (a POST body, a random row id).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors (connect, read, write, timeout) and non-2xx answers


def available() -> str | None:
    return shutil.which("wrk")


def run(url: str, *, script: str, connections: int, seconds: float, core: int | None) -> WrkResult:
    """``wrk -t1 -c<connections> -d<seconds>s --latency`` on ``core``; ``script`` is Lua."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    command += ["--timeout", "10s", "-s", lua.name, url]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    finally:
        Path(lua.name).unlink(missing_ok=True)
    return parse(done.stdout)


def parse(output: str) -> WrkResult:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or total is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_second=float(rate.group(1)),
        p50_ms=_ms(latency.get("50", "nan")),
        p99_ms=_ms(latency.get("99", "nan")),
        requests=int(total.group(1)),
        errors=errors + (int(non_2xx.group(1)) if non_2xx else 0),
    )


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(found.group(1)) * _UNITS[found.group(2)] if found else float("nan")
