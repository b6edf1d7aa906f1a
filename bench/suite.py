"""``python -m bench``: every side-by-side workload (W1-W7), then ``bench/RESULTS.md``.

Runs ``http`` (W1-W4 and W2pg, with wrk) and then ``streams`` (W5-W7, with the asyncio
clients) with their default sizes, or their smoke sizes with ``--smoke`` (seconds; for CI),
and writes one report: a summary of the targets of issue 8, then each part's tables. The
full run takes about half an hour on two cores; it must have the machine to itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Any

from bench import http_compare, streams_compare, wrk

RESULTS = "bench/RESULTS.md"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "all",
        help="every side-by-side workload, then bench/RESULTS.md (the default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser)
    parser.set_defaults(run=main)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--smoke", action="store_true", help="seconds per part, for CI")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each part")
    parser.add_argument(
        "--results", default=None, help=f"the Markdown report ({RESULTS}; none with --smoke)"
    )
    parser.add_argument("--json", default="", help="every measurement of both parts, as JSON")


def main(args: argparse.Namespace) -> int:
    if wrk.available() is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on a timeout
    http = http_compare.Params(rounds=args.rounds)
    streams = streams_compare.Params(rounds=args.rounds)
    if args.smoke:
        http = dataclasses.replace(http, rounds=1, seconds=1.0, warmup=0.0)
        streams = streams_compare.smoke(streams)
    print("== http: W1-W4, W2pg", flush=True)
    http_report = http_compare.measure(http)
    print(http_compare.table(http_report), flush=True)
    print("== streams: W5-W7", flush=True)
    streams_report = streams_compare.measure(streams)
    print(streams_compare.table(streams_report), flush=True)

    results = args.results if args.results is not None else ("" if args.smoke else RESULTS)
    if results:
        Path(results).write_text(markdown(http_report, streams_report))
        print(f"wrote {results}")
    if args.json:
        both = {"http": http_report, "streams": streams_report}
        Path(args.json).write_text(json.dumps(both, indent=2) + "\n")
    problems = [f"{key}: {n} failed requests" for key, n in http_report["errors"].items() if n]
    problems += streams_compare.failures(streams_report, strict=args.smoke)
    if problems:
        print(f"FAILED: {', '.join(problems)}", file=sys.stderr)
        return 1
    return 0


def markdown(http_report: dict[str, Any], streams_report: dict[str, Any]) -> str:
    verdicts = [
        *http_compare.targets(http_report),
        *streams_compare.targets(streams_report),
    ]
    met = sum(1 for *_, ok in verdicts if ok)
    lines = [
        "# Royal against Flask and FastAPI: benchmark results",
        "",
        "Written by `python -m bench` (bench/README.md says how it measures; "
        "docs/performance.md reads these figures and gives the deployment advice that follows "
        f"from them). Targets of issue 8 met: **{met} of {len(verdicts)}**.",
        "",
        "| target | measured | met |",
        "|---|---:|---|",
    ]
    for what, value, _, ok in verdicts:
        lines.append(f"| {what} | {_shown(what, value)} | {'yes' if ok else '**no**'} |")
    lines.append("")
    demoted = [_demote(http_compare.markdown(http_report))]
    demoted.append(_demote(streams_compare.markdown(streams_report)))
    return "\n".join(lines) + "\n" + "\n".join(demoted)


def _shown(what: str, value: float | None) -> str:
    """A ratio (the target compares two candidates: "a / b") as 0.59x, else the figure."""
    if value is None:
        return "-"
    return f"{value:.2f}x" if " / " in what else f"{value:,.1f}"


def _demote(section: str) -> str:
    """One heading level down, so both parts sit under the report's title."""
    return "\n".join("#" + line if line.startswith("#") else line for line in section.splitlines())
