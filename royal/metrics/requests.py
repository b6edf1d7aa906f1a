"""Request counts and latencies of this process, for /metrics (JSON) and Prometheus."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from royal.metrics.families import REQUEST_SECONDS, REQUESTS

RECENT = 2048  # latencies kept for the JSON percentiles (the newest requests)


class RequestStats:
    def __init__(self) -> None:
        self.total = 0
        self.by_status: Counter[str] = Counter()  # "2xx", "4xx", ...
        self._recent: deque[float] = deque(maxlen=RECENT)

    def record(self, method: str, route: str, status: int, seconds: float | None) -> None:
        self.total += 1
        self.by_status[f"{status // 100}xx"] += 1
        REQUESTS.labels(method, route, str(status)).inc()
        if seconds is not None:
            self._recent.append(seconds)
            REQUEST_SECONDS.labels(method, route).observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted(self._recent)

        def percentile(share: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000, 3)

        return {
            "total": self.total,
            "by_status": dict(sorted(self.by_status.items())),
            "latency_ms": {"p50": percentile(0.5), "p99": percentile(0.99), "of": len(ordered)},
        }
