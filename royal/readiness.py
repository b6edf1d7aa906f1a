"""Readiness checks: each extension registers what it needs to serve; /readyz runs them all.

A check is an async callable that returns details (a dict) or raises when not ready. Checks run
concurrently, each under the app's READYZ_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Quart

Check = Callable[[], Awaitable[dict[str, Any] | None]]
_KEY = "royal.readiness"


def add_check(app: Quart, name: str, check: Check) -> None:
    app.extensions.setdefault(_KEY, {})[name] = check


async def run_checks(app: Quart) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Run every check; returns (all ready, per-check results)."""
    checks: dict[str, Check] = app.extensions.get(_KEY, {})
    timeout = float(app.config["READYZ_TIMEOUT_SECONDS"])
    names = list(checks)
    results = await asyncio.gather(*(_run_one(checks[n], timeout) for n in names))
    report = dict(zip(names, results, strict=True))
    return all(result["ok"] for result in results), report


async def _run_one(check: Check, timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        details = await asyncio.wait_for(check(), timeout)
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {timeout:g} s"}
    except Exception as error:  # a failing dependency is a report, not a crash
        return {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
    result: dict[str, Any] = {
        "ok": True,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    result.update(details or {})
    return result
