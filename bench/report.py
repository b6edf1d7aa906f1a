"""The table a benchmark prints: the run's context, the benchmark's own rows, shared notes.

Every table starts with the same rows (target, machine, versions, run) and ends with the
server's stream counters and the background load, so that any two reports read alike.
"""

from __future__ import annotations

from typing import Any


def num(value: float | None, spec: str) -> str:
    """``value`` formatted, or ``-`` when there is none (nothing was measured)."""
    return "-" if value is None else format(value, spec)


def render(report: dict[str, Any], run: str, rows: list[tuple[str, str]], notes: list[str]) -> str:
    """The whole table; ``run`` describes the parameters, ``rows`` are the benchmark's own."""
    e, r = report["environment"], report["results"]
    calibration = e["calibration_ms"]
    packages = e["packages"]
    rows = [
        ("target", f"{report['target']} ({report['server']['config']}, 1 worker)"),
        (
            "machine",
            f"{e['cores']} cores ({e['cpu_model']}), server core {report['cores']['server']}, "
            f"client core {report['cores']['client']}; calibration (server/client core, "
            f"before -> after) {calibration['server_core']:.1f} / "
            f"{calibration['client_core']:.1f} -> {calibration['server_core_after']:.1f} / "
            f"{calibration['client_core_after']:.1f} ms",
        ),
        (
            "versions",
            f"Python {e['python']}, Quart {packages['quart']}, Hypercorn {packages['hypercorn']}, "
            f"h11 {packages['h11']}, uvloop {packages['uvloop']}, "
            f"royal {e['git_revision'] or '(not a git checkout)'}",
        ),
        ("run", run),
        ("", ""),
        *rows,
        ("server counters", ", ".join(f"{k} {v:,}" for k, v in r["server_counters"].items())),
        (
            "background load",
            "other processes {:.2f} CPU-s, steal {:.2f} s; interrupts {}".format(
                r["background_cpu_seconds"],
                r["steal_seconds"],
                ", ".join(f"{k} {v:.2f} s" for k, v in r["interrupt_seconds"].items()),
            ),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" if name else "" for name, value in rows]
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)


def caveats(results: dict[str, Any], saturated_server: str | None) -> list[str]:
    """Why the figures may mislead: a busy client or machine, a profiler; and the benchmark's
    own ``saturated_server`` note (each says in its own terms what an overload does)."""
    found = []
    if results["client_cpu_utilisation"] > 0.9:
        found.append("the client used over 90% of its core: latencies include its own queueing")
    if saturated_server:
        found.append(saturated_server)
    if results["background_cpu_seconds"] + results["steal_seconds"] > (
        0.05 * results["window_seconds"]
    ):
        found.append(
            "other processes used over 5% of a core meanwhile: the machine was not quiet, "
            "repeat the run"
        )
    if results["profiled"]:
        found.append("py-spy was sampling the server: these figures are skewed")
    return found
