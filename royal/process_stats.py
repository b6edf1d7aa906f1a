"""What a long-running worker is watched for when hunting leaks: its asyncio tasks, open file
descriptors and resident memory (``GET /streams`` reports them; ``bench/soak.py`` compares
them before and after thousands of reconnects)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_stats() -> dict[str, int | None]:
    """Tasks on the running loop, open descriptors and RSS in bytes (None where the platform
    has no /proc to read them from)."""
    return {
        "tasks": len(asyncio.all_tasks()),
        "open_fds": _count_entries(Path("/proc/self/fd")),
        "rss_bytes": _rss_bytes(),
    }


def _count_entries(folder: Path) -> int | None:
    try:
        return sum(1 for _ in folder.iterdir())
    except OSError:
        return None


def _rss_bytes() -> int | None:
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * _PAGE_SIZE
