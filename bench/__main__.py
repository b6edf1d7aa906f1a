"""``python -m bench``: every side-by-side workload, then bench/RESULTS.md; ``python -m bench
sse --subscribers 1000 --rate 20 --seconds 10``: one benchmark.

Every benchmark module offers ``add_parser(subparsers)``, which registers its subcommand and
sets ``run`` to a function taking the parsed arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import sys

from bench import agent_streams, http_compare, soak, sse_fanout, streams_compare, suite

BENCHMARKS = (suite, http_compare, streams_compare, sse_fanout, agent_streams, soak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    subparsers = parser.add_subparsers(title="benchmarks", metavar="BENCHMARK", required=True)
    for module in BENCHMARKS:
        module.add_parser(subparsers)
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["all", *argv]  # no benchmark named: all of them
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
