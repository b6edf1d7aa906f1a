"""Peer apps for side-by-side benchmarks: Royal's workloads in Flask and in FastAPI.

Each peer is written the way an expert in its framework would write it, and serves:

- ``GET /json``: a small JSON object;
- ``GET /rows/<id>``: one row of ``items`` from SQLite or PostgreSQL (``rows.seed_rows``);
- ``POST /validated``: a pydantic-validated body, echoed with an id (201);
- ``GET /upstream``: the JSON of a 50 ms call to ``upstream.py``;
- ``GET /streams/alerts`` (SSE), ``POST /streams/alerts`` (publish) and ``GET /ws``
  (WebSocket): every event published in the process reaches every open stream.

The peers have no authentication: Royal's benchmarks send a bearer token that Royal checks on
every request and stream, so skipping it favours the peers slightly. Their event streams live
in memory (no event log, no resume): a subscriber that falls 1,000 events behind is dropped and
reconnects, where Royal would replay from its log.

``bench/peer_servers.py`` starts them: Flask on Gunicorn (``flask_app``), FastAPI on Uvicorn
(``fastapi_app``), and the upstream. Each reads its settings from ``PEER_*`` variables
(``config.py``).
"""
