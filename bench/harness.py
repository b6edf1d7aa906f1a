"""How every benchmark runs, so that their figures compare: its command line, the calibrated
cores and the pinned server, the event loop, the context saved with the results, and the
exit status.

A benchmark declares its parameters as a dataclass whose fields made with ``option()`` are
its command-line options, and offers ``add_parser(subparsers)`` (see bench/__main__.py).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench import machine
from bench.servers import RoyalServer

Report = dict[str, Any]


def option(default: Any, *aliases: str, **argparse_kw: Any) -> Any:
    """A parameter that is also the option ``--its-name``, typed after its default;
    ``argparse_kw`` (help, choices, type) go to ``add_argument``."""
    return dataclasses.field(default=default, metadata={"aliases": aliases, "kw": argparse_kw})


def add_options(parser: argparse.ArgumentParser, params_type: Any) -> None:
    """An option ``--its-name`` for each ``option()`` field of ``params_type``, in order."""
    for field in dataclasses.fields(params_type):
        if "kw" in field.metadata:
            kw = {"type": type(field.default), **field.metadata["kw"]}
            flag = "--" + field.name.replace("_", "-")
            parser.add_argument(flag, *field.metadata["aliases"], default=field.default, **kw)


def add_parser(
    subparsers: Any,
    name: str,
    summary: str,
    doc: str | None,
    params_type: Any,
    main: Callable[[argparse.Namespace], int],
    *,
    profiled: str,
    smoke: str,
) -> None:
    """``python -m bench NAME``, described by ``doc``, with an option for each
    ``option()`` of ``params_type`` in order, then ``--loop``, ``--profile``, ``--json`` and
    ``--smoke``. ``profiled`` says when py-spy runs, ``smoke`` what the smoke run's size is."""
    parser = subparsers.add_parser(
        name, help=summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = params_type()
    add_options(parser, params_type)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default=defaults.loop)
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help=f"run py-spy on the server worker {profiled} (.txt: collapsed stacks, "
        "else a flamegraph SVG); the figures of a profiled run are skewed",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"a few seconds' run for CI ({smoke}); other sizes given are ignored",
    )
    parser.set_defaults(run=main)


def run(
    benchmark: str,
    params: Any,
    server_env: dict[str, str],
    descriptors: int,
    drive: Callable[[RoyalServer], Coroutine[Any, Any, dict[str, Any]]],
    derived: dict[str, Any],
) -> Report:
    """Start the server on its core, run ``drive(server)`` on the client's, and return the
    results with what a reader needs to compare runs.

    ``drive`` is called before this thread moves to the client core, so it may prepare the
    server synchronously before it returns the coroutine. ``derived`` adds parameters that
    follow from the others.
    """
    environment = machine.environment(("httpx", "orjson"))
    cores = machine.Cores.choose()
    # Before and after the run: a virtual machine's speed can drift within minutes.
    environment["calibration_ms"] = calibration = {
        "server_core": machine.calibrate(cores.server),
        "client_core": machine.calibrate(cores.client),
    }
    # Each stream holds descriptors on both sides; the server inherits this limit.
    machine.raise_fd_limit(descriptors)
    with RoyalServer(server_env, core=cores.server) as server:
        measurement = drive(server)
        machine.pin_thread(cores.client)
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
        if params.loop == "uvloop":
            import uvloop

            loop_factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            results = runner.run(measurement)
    calibration["server_core_after"] = machine.calibrate(cores.server)
    calibration["client_core_after"] = machine.calibrate(cores.client)
    return {
        "benchmark": benchmark,
        "target": server.name,
        "environment": environment,
        "cores": {"server": cores.server, "client": cores.client},
        "parameters": dataclasses.asdict(params) | derived,
        "server": server.settings(),
        "results": results,
    }


def main(
    args: argparse.Namespace,
    params_type: Callable[..., Any],
    smoke: dict[str, Any],
    run_benchmark: Callable[[Any], Report],
    format_table: Callable[[Report], str],
    failures: Callable[[Report], list[str]],
) -> int:
    """Run with the parsed options, print the table, save the JSON; non-zero on ``failures``."""
    names = [field.name for field in dataclasses.fields(params_type)]  # type: ignore[arg-type]
    params = params_type(**{name: getattr(args, name) for name in names})
    if params.smoke:
        for name, value in smoke.items():
            setattr(params, name, value)
    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so the server is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run_benchmark(params)
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    problems = failures(report)
    if problems:
        print(f"FAILED: {', '.join(problems)}", file=sys.stderr)
        return 1
    return 0
