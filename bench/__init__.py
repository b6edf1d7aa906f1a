"""Royal's benchmarks: ``python -m bench <benchmark> [options]``; ``python -m bench -h`` lists them.

Each benchmark starts its server on 127.0.0.1 pinned to one core, drives it from this process
pinned to another, and reports the server's own CPU time and memory from /proc (Linux only).
See bench/README.md for how to run them and how to read the figures.
"""
