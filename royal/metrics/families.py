"""Royal's Prometheus metrics: the names are a public contract (docs/metrics.md).

Defined once at import. Under ``royal serve`` the supervisor sets PROMETHEUS_MULTIPROC_DIR
before it starts the workers, so every worker writes its values to files there and a scrape
on any worker adds them up; each gauge says how (``livesum``: the sum over live workers).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "royal_http_requests",
    "HTTP requests answered, by method, route (the URL rule) and status code.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "royal_http_request_duration_seconds",
    "Time to the response's headers (streams: to their first byte), by method and route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SSE_OPEN = Gauge("royal_sse_connections", "Open SSE streams.", multiprocess_mode="livesum")
WS_OPEN = Gauge("royal_websocket_connections", "Open WebSockets.", multiprocess_mode="livesum")
STREAM_EVENTS = Counter(
    "royal_stream_events",
    "Realtime layer events by stage: published, dispatched (to this process's broker), "
    "delivered (to clients), replayed (from the log on resume or catch-up).",
    ["stage"],
)
WORKERS = Gauge("royal_workers", "Worker processes serving.", multiprocess_mode="livesum")
CIRCUIT_OPEN = Gauge(
    "royal_agent_circuit_open",
    "1 while the agent backend's circuit breaker is open in some worker.",
    multiprocess_mode="max",
)
