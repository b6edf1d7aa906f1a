"""What the ``agents`` benchmark's streams received, checked against what the server stored.

After the run the bench reads the SQLite file: every event row of the sessions' topics, the
replies' stored text, and the ``jobs`` topic's rows. Each stream must have received every
delta row of its reply exactly once, in order, and the same text; the rows' ``created_at``
also gives the token latencies and where the time to first token went.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from bench import stats
from bench.agent_load import AgentStream
from bench.window import Sample
from royal.agents.local import words

POINTS = ("count", "min", "p01", "p50", "p90", "p99", "max", "mean")


def _summary(values: list[float], scale: float = 1e3) -> dict[str, float | None]:
    """Percentiles (ms by default; ``scale=1`` keeps the unit); ``min`` for rates."""
    return stats.summary(values, POINTS, scale)


def _epoch(created_at: str) -> float:
    """``2024-05-01T12:00:00.123Z`` (SQLite's strftime, truncated to the millisecond)."""
    return datetime.fromisoformat(created_at).timestamp()


Row = tuple[int, str, dict[str, Any], float]  # id, event, data, created_at (epoch seconds)
Stored = tuple[str | None, str | None, int | None]  # content, status, job_id


def read_log(
    database: Path, topics: set[str]
) -> tuple[dict[str, list[Row]], dict[int, Stored], dict[int, dict[str, float]]]:
    """From the server's SQLite file: the event rows of ``topics``, the stored replies by id,
    and when each job was queued (with the POST) and claimed by the agents lane."""
    rows: dict[str, list[Row]] = defaultdict(list)
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        for row_id, topic, event, data, created_at in db.execute(
            "SELECT id, topic, event, data, created_at FROM stream_events "
            "WHERE topic LIKE 'agent:%' ORDER BY id"
        ):
            if topic in topics:
                rows[topic].append((row_id, event, orjson.loads(data), _epoch(created_at)))
        stored = {
            row_id: (content, status, job_id)
            for row_id, content, status, job_id in db.execute(
                "SELECT id, content, status, job_id FROM agent_messages WHERE role = 'assistant'"
            )
        }
        job_times: dict[int, dict[str, float]] = defaultdict(dict)
        for event, data, created_at in db.execute(
            "SELECT event, data, created_at FROM stream_events WHERE topic = 'jobs' "
            "AND event IN ('job.queued', 'job.running') ORDER BY id"
        ):
            job_times[orjson.loads(data)["id"]].setdefault(event, _epoch(created_at))
    return rows, stored, job_times


def analyse(
    database: Path, streams: list[AgentStream], started_at: float, samples: list[Sample]
) -> dict[str, Any]:
    """Compare what every stream received with the event log and the stored replies."""
    topics = {f"agent:{stream.session_id}": stream for stream in streams}
    rows, stored, job_times = read_log(database, set(topics))
    counts = dict.fromkeys(
        ("lost", "duplicates", "unexpected", "index_errors", "mismatched", "not_done", "errors"),
        0,
    )
    latencies: list[float] = []  # every delta received live
    replayed: list[float] = []  # after a deliberate drop: arrival minus the resume request
    opened_late = 0  # deltas committed before their stream's GET was sent
    ttft: list[float] = []
    first_commit: list[float] = []
    queued: list[float] = []  # POST sent to the job's commit
    waiting: list[float] = []  # job queued to claimed
    starting: list[float] = []  # claimed to the first delta's commit
    claims: dict[int, int] = defaultdict(int)  # second of the window -> replies claimed
    spans: list[tuple[float, int]] = []  # (time, +1 claimed / -1 final event committed)
    post_seconds: list[float] = []
    rates: list[float] = []
    event_rates: list[float] = []
    durations: list[float] = []
    tokens_total = events_total = 0
    by_second: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # second -> [tokens, events]
    per_stream: list[list[Any]] = []
    errors: list[str] = []
    for topic, stream in topics.items():
        if stream.error is not None:
            counts["errors"] += 1
            errors.append(stream.error)
        reply_rows = [row for row in rows[topic] if row[2].get("message_id") == stream.reply_id]
        created = {row[0]: row[3] for row in reply_rows}
        logged = [row for row in reply_rows if row[1] == "message"]
        for _, _, data, at in logged:
            tokens = len(data["delta"].split())
            bucket = by_second[int(at - started_at)]
            bucket[0] += tokens
            bucket[1] += 1
        logged_ids = {row[0] for row in logged}
        received = set(stream.ids)
        counts["lost"] += len(logged_ids - received)
        counts["unexpected"] += len(received - logged_ids)
        counts["duplicates"] += len(stream.ids) - len(received)
        seen: set[int] = set()
        text: list[str] = []
        indices: list[int] = []
        first = last = None
        for position, (event_id, index, arrival, delta) in enumerate(
            zip(stream.ids, stream.indices, stream.arrivals, stream.deltas, strict=True)
        ):
            if event_id in seen:
                continue
            seen.add(event_id)
            text.append(delta)
            indices.append(index)
            first = first or (arrival, delta, event_id)
            last = arrival
            committed = created.get(event_id)
            if committed is None:
                continue
            if stream.resume_sent is not None and position >= stream.resumed_at:
                if committed < stream.resume_sent:
                    replayed.append(arrival - stream.resume_sent)
                    continue
            elif committed < stream.get_sent:
                opened_late += 1
            latencies.append(arrival - committed)
        if indices != list(range(len(indices))):
            counts["index_errors"] += 1
        content, status, job_id = stored.get(stream.reply_id or 0, (None, None, None))
        job = job_times.get(job_id or 0, {})
        if "job.queued" in job:
            queued.append(job["job.queued"] - stream.post_sent)
        if "job.running" in job:
            claims[int(job["job.running"] - started_at)] += 1
            if "job.queued" in job:
                waiting.append(job["job.running"] - job["job.queued"])
            first_delta = min(created.values(), default=None)
            if first_delta is not None:
                starting.append(first_delta - job["job.running"])
            ended = [row[3] for row in reply_rows if row[1] in ("done", "error")]
            if ended:
                spans += [(job["job.running"], 1), (ended[0], -1)]
        final = stream.final_data or {}
        if (
            "".join(text) != content
            or status != "complete"
            or content != stream.answer
            or (stream.final_event == "done" and final.get("content") != content)
        ):
            counts["mismatched"] += 1
        if stream.final_event != "done":
            counts["not_done"] += 1
        tokens = len(words(content or ""))
        tokens_total += tokens
        events_total += len(logged)
        if first is None or last is None:
            per_stream.append([stream.reply_id, tokens, len(logged), None, None, None])
            continue
        span = last - first[0]
        ttft.append(first[0] - stream.post_sent)
        post_seconds.append(stream.post_answered - stream.post_sent)
        if first[2] in created:
            first_commit.append(created[first[2]] - stream.post_sent)
        if span > 0:
            rates.append((tokens - len(first[1].split())) / span)
            event_rates.append((len(indices) - 1) / span)
        if stream.final_event is not None:
            durations.append(stream.final_at - first[0])
        per_stream.append(
            [
                stream.reply_id,
                tokens,
                len(logged),
                round((first[0] - stream.post_sent) * 1e3, 1),
                round(span, 3),
                stream.resume_sent is not None,
            ]
        )

    cpu_by_second = [
        round((b.server_cpu - a.server_cpu) / (b.at - a.at), 3)
        for a, b in zip(samples, samples[1:], strict=False)
    ]
    seconds = sorted(by_second)
    generating = peak = 0
    for _, step in sorted(spans):
        generating += step
        peak = max(peak, generating)
    return {
        "streams": len(streams),
        "replies_done": sum(stream.final_event == "done" for stream in streams),
        "resumed_streams": sum(stream.resume_sent is not None for stream in streams),
        **counts,
        "other_events": sum(stream.other_events for stream in streams),
        "id_regressions": sum(stream.id_regressions for stream in streams),
        "error_examples": sorted(set(errors))[:5],
        "tokens": tokens_total,
        "delta_events": events_total,
        "tokens_per_event": tokens_total / events_total if events_total else None,
        "stream_writes": sum(stream.writes for stream in streams),
        "heartbeat_comments": sum(stream.comments for stream in streams),
        "token_latency_ms": _summary(latencies),
        "live_deltas": len(latencies),
        "deltas_committed_before_get": opened_late,
        "replayed_after_resume": len(replayed),
        "resume_catch_up_ms": _summary(replayed),
        "time_to_first_token_ms": _summary(ttft),
        "first_token_committed_ms": _summary(first_commit),
        "post_ms": _summary(post_seconds),
        "job_queued_ms": _summary(queued),
        "job_waiting_ms": _summary(waiting),
        "claim_to_first_delta_ms": _summary(starting),
        "claims_by_second": [[second, claims[second]] for second in sorted(claims)],
        "peak_replies_generating": peak,
        "token_rate_per_stream": _summary(rates, scale=1.0),
        "events_per_stream_second": _summary(event_rates, scale=1.0),
        "stream_seconds": _summary(durations, scale=1.0),
        "server_cpu_us_per_token": None,  # filled in by measure(), which knows the CPU
        "server_cpu_by_second": cpu_by_second,
        "tokens_per_event_by_second": [
            [second, round(by_second[second][0] / by_second[second][1], 2)] for second in seconds
        ],
        "events_by_second": [[second, by_second[second][1]] for second in seconds],
        "replies_finished_by_second": [[round(s.at, 1), s.finished] for s in samples],
        "per_stream": per_stream,
        "per_stream_columns": [
            "reply_id",
            "tokens",
            "events",
            "first_token_ms",
            "first_to_last_delta_s",
            "resumed",
        ],
    }
