"""Agent streams: N concurrent replies at R tokens/s each on one process, persisted, resumable.

Each stream is one agent session of a viewer created straight in the database. On one raw
HTTP/1.1 connection it POSTs a question to ``/agents/message``, then (keep-alive, same
connection) GETs ``/agents/stream?session_id=..&reply_id=..`` and reads the reply's ``message``
deltas until ``done``. The embedded local backend restates the question word by word, one
word every ``--token-seconds``, so a question of W words gets a reply of W + 23 tokens; the
bench sizes the questions to ``--tokens``. ``--resume-fraction`` of the streams drop their
connection once mid-reply and resume with ``Last-Event-ID`` after ``--resume-delay``.

What it measures, on the server's one worker process (pinned to core 0):
- token latency: arrival (this process's ``time.time()``) minus the event row's ``created_at``
  in SQLite (the INSERT that commits the delta batch), for every delta received live;
- time to first token (POST sent to the first delta's arrival) and where it goes: the POST,
  the wait for a claim in the ``agents`` job lane, the first batch (from the ``jobs`` topic's
  ``job.queued`` and ``job.running`` rows); how many replies were generating at once;
- the achieved token rate and event rate per stream, tokens per event (the delta writer's
  batching: about ``--batch-seconds / --token-seconds`` when the server keeps up);
- exactness: every reply's deltas, joined in the order received, must equal the stored
  ``agent_messages.content``; indices 0..n-1 once each; every delta row of the log received
  once; the stream ends with ``done``;
- the worker's CPU share and RSS (before, peak with every stream open, end).

The load generator (this process, pinned to core 1) reports its own CPU, as ``sse`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from bench import harness, machine
from bench.agent_analysis import analyse
from bench.agent_load import AgentStream, create_sessions, make_questions, warm_up
from bench.harness import option
from bench.report import caveats, num, render
from bench.servers import RoyalServer
from bench.window import Profiler, Sample, Window, monitor

SMOKE = {"streams": 20, "tokens": 50}
BENCH_USER = "bench-agent-user"


@dataclass
class Params:
    streams: int = option(1000, "-n")
    tokens: int = option(500, "-t", help="reply length in tokens")
    token_seconds: float = option(
        0.02, help="ROYAL_AGENT_LOCAL_TOKEN_SECONDS: the backend's pause between tokens"
    )
    resume_fraction: float = option(
        0.1, help="share of the streams that drop their connection once mid-reply and resume"
    )
    resume_delay: float = option(
        0.5, help="seconds between the drop and the reconnection with Last-Event-ID"
    )
    batch_seconds: float = option(
        0.05, help="ROYAL_AGENT_BATCH_SECONDS: how long the server gathers tokens into one event"
    )
    connect_batch: int = option(200)
    timeout: float | None = option(
        None,
        type=float,
        help="seconds the replies get before the run gives up "
        "(default 3 x reply + 60 + 0.1 per stream)",
    )
    seed: int = option(1, help="questions and drops")
    loop: str = "uvloop"
    profile: str | None = None
    smoke: bool = False

    @property
    def reply_seconds(self) -> float:
        """How long one reply takes at the backend's pace (the first token comes at once)."""
        return (self.tokens - 1) * self.token_seconds

    @property
    def resumed(self) -> int:
        return round(self.streams * self.resume_fraction)

    @property
    def deadline(self) -> float:
        """Seconds the replies get: an overloaded server starts them over a minute or more."""
        if self.timeout is not None:
            return self.timeout
        return 3 * self.reply_seconds + 60 + 0.1 * self.streams


def add_parser(subparsers: Any) -> None:
    help_line = "agent reply streams: token latency, time to first token, loss, CPU, memory"
    size = f"{SMOKE['streams']} streams x {SMOKE['tokens']} tokens"
    harness.add_parser(
        subparsers,
        "agents",
        help_line,
        __doc__,
        Params,
        main,
        profiled="during the replies",
        smoke=size,
    )


async def measure(server: RoyalServer, params: Params, token: str) -> dict[str, Any]:
    pid = server.worker_pid
    rng = random.Random(params.seed)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as http:
        await warm_up(http)
        session_ids = await create_sessions(http, params.streams)
    questions = await make_questions(params.streams, params.tokens, rng)
    resumed = set(rng.sample(range(params.streams), params.resumed))
    low, high = max(1, params.tokens // 5), max(1, params.tokens * 3 // 5)
    streams = [
        AgentStream(session_id, question, answer, rng.randint(low, high) if n in resumed else None)
        for n, (session_id, (question, answer)) in enumerate(
            zip(session_ids, questions, strict=True)
        )
    ]
    await asyncio.sleep(0.5)
    counters_before = await server.stream_counters()
    rss_start = machine.rss_bytes(pid)

    connect_started = time.perf_counter()
    for start in range(0, len(streams), params.connect_batch):
        group = streams[start : start + params.connect_batch]
        await asyncio.wait_for(asyncio.gather(*(s.connect(server.port) for s in group)), 60)
    connect_seconds = time.perf_counter() - connect_started

    profiler = Profiler(params.profile, pid, params.reply_seconds + 2)
    window = Window(server)
    tasks = [asyncio.create_task(s.run(server.port, token, params.resume_delay)) for s in streams]
    samples = [Sample(0.0, window.server_cpu_start, rss_start, 0)]
    sampler = asyncio.create_task(monitor(pid, window.started, tasks, samples))
    _, pending = await asyncio.wait(tasks, timeout=params.deadline)
    window.close()
    rss_peak = max(machine.rss_bytes(pid), *(sample.rss for sample in samples))
    sampler.cancel()
    for task in pending:
        task.cancel()
    await asyncio.gather(sampler, *pending, return_exceptions=True)
    for stream in streams:
        if stream.final_event is None and stream.error is None:
            stream.error = f"no end within {params.deadline:g} s"
    await asyncio.sleep(1.0)
    rss_end = machine.rss_bytes(pid)
    counters_after = await server.stream_counters()
    await asyncio.to_thread(profiler.wait)

    results = {
        "window_seconds": window.seconds,
        "window_started_at": window.started_at,
        "server_cpu_seconds": window.server_cpu,
        "server_cpu_utilisation": window.server_cpu / window.seconds,
        "client_cpu_seconds": window.client_cpu,
        "client_cpu_utilisation": window.client_cpu / window.seconds,
        **window.background(),
        "connect_seconds": connect_seconds,
        "rss_bytes": {"before": rss_start, "peak_with_streams": rss_peak, "end": rss_end},
        "rss_bytes_per_stream": (rss_peak - rss_start) / params.streams,
        "server_counters": {
            key: counters_after[key] - counters_before[key] for key in counters_after
        },
        "profiled": params.profile is not None,
    }
    results |= analyse(server.database_path, streams, window.started_at, samples)
    if results["tokens"]:
        results["server_cpu_us_per_token"] = window.server_cpu / results["tokens"] * 1e6
    return results


def run(params: Params) -> harness.Report:
    def drive(server: RoyalServer) -> Coroutine[Any, Any, dict[str, Any]]:
        token = server.seed_user(BENCH_USER, "viewer")
        return measure(server, params, token)

    env = {
        "ROYAL_AGENT_CONCURRENCY": str(params.streams + 1),
        "ROYAL_AGENT_LOCAL_TOKEN_SECONDS": str(params.token_seconds),
        "ROYAL_AGENT_BATCH_SECONDS": str(params.batch_seconds),
        "ROYAL_JOB_POLL_SECONDS": "0.1",
    }
    return harness.run(
        "agent_streams",
        params,
        env,
        # Each stream holds a descriptor on both sides (two while it resumes).
        descriptors=2 * params.streams + 1024,
        drive=drive,
        derived={"reply_seconds": params.reply_seconds, "resumed": params.resumed},
    )


def failures(report: harness.Report) -> list[str]:
    """What makes the run a failure: any token lost, repeated, out of place, or a reply not done."""
    results = report["results"]
    keys = (
        "lost",
        "duplicates",
        "unexpected",
        "index_errors",
        "mismatched",
        "not_done",
        "errors",
        "other_events",
        "id_regressions",
    )
    return [f"{results[key]} {key.replace('_', ' ')}" for key in keys if results[key]]


def format_table(report: harness.Report) -> str:
    p, r = report["parameters"], report["results"]

    def pct(stats: dict[str, float | None], spec: str = ".1f", unit: str = "ms") -> str:
        return (
            f"{num(stats['p50'], spec)} / {num(stats['p99'], spec)} / {num(stats['max'], spec)}"
            f" {unit} (p90 {num(stats['p90'], spec)}, mean {num(stats['mean'], spec)})"
        )

    lat = r["token_latency_ms"]
    rate, event_rate = r["token_rate_per_stream"], r["events_per_stream_second"]
    cpu_seconds = r["server_cpu_by_second"]
    claims = [count for _, count in r["claims_by_second"]]
    events = dict(r["events_by_second"])
    # Seconds with a handful of events (the first, the last) say little about batching.
    tpe = [value for second, value in r["tokens_per_event_by_second"] if events[second] >= 10]
    run = (
        f"{p['streams']:,} streams x {p['tokens']} tokens at {1 / p['token_seconds']:g} "
        f"tokens/s ({p['reply_seconds']:.1f} s a reply), batch {p['batch_seconds']:g} s, "
        f"{p['resumed']} resumed after {p['resume_delay']:g} s"
    )
    rows = [
        (
            "replies",
            f"{r['replies_done']:,} of {r['streams']:,} done, {r['resumed_streams']} resumed "
            f"with Last-Event-ID ({r['replayed_after_resume']:,} deltas replayed)",
        ),
        (
            "lost / dup / mismatch",
            f"{r['lost']} / {r['duplicates']} / {r['mismatched']} (index errors "
            f"{r['index_errors']}, unexpected {r['unexpected']}, not done {r['not_done']}, "
            f"errors {r['errors']}, other events {r['other_events']})",
        ),
        (
            "tokens",
            f"{r['tokens']:,} in {r['delta_events']:,} events "
            f"({num(r['tokens_per_event'], '.2f')} tokens per event, by second "
            f"{num(min(tpe, default=None), '.2f')}-{num(max(tpe, default=None), '.2f')}), "
            f"{r['stream_writes']:,} writes",
        ),
        (
            "token rate / stream",
            f"p50 {num(rate['p50'], '.1f')}, p01 {num(rate['p01'], '.1f')}, "
            f"min {num(rate['min'], '.1f')} tokens/s; events p50 {num(event_rate['p50'], '.1f')}/s",
        ),
        ("token latency p50/p99/max", pct(lat)),
        (
            "latency sample",
            f"{r['live_deltas']:,} live deltas ({r['deltas_committed_before_get']:,} committed "
            "before their GET), commit time to arrival; + up to the batch window before commit",
        ),
        ("time to first token", pct(r["time_to_first_token_ms"], ".0f")),
        (
            "  of which",
            "p50 / p99 ms: POST answered {} / {}, job committed {} / {}, then waiting for a "
            "claim {} / {}, claim to first delta committed {} / {}".format(
                *(
                    num(r[key][q], ".0f")
                    for key in ("post_ms", "job_queued_ms", "job_waiting_ms")
                    + ("claim_to_first_delta_ms",)
                    for q in ("p50", "p99")
                )
            ),
        ),
        (
            "claims",
            f"replies started per second: peak {max(claims, default=0)}, median "
            f"{num(statistics.median(claims) if claims else None, '.0f')} "
            f"(over {len(claims)} s); at most {r['peak_replies_generating']:,} generating at once",
        ),
        ("resume catch-up", pct(r["resume_catch_up_ms"], ".0f")),
        ("stream duration", pct(r["stream_seconds"], ".2f", "s")),
        (
            "window",
            f"{r['window_seconds']:.2f} s (first POST to the last done); "
            f"connecting {r['connect_seconds']:.2f} s before it",
        ),
        (
            "server CPU",
            f"{r['server_cpu_seconds']:.2f} s ({r['server_cpu_utilisation']:.0%} of a core, by "
            f"second {min(cpu_seconds, default=0):.0%}-{max(cpu_seconds, default=0):.0%}); "
            f"{num(r['server_cpu_us_per_token'], '.1f')} µs per token",
        ),
        (
            "RSS",
            f"{r['rss_bytes']['before'] / 2**20:.1f} MiB before, "
            f"{r['rss_bytes']['peak_with_streams'] / 2**20:.1f} MiB peak with the streams, "
            f"{r['rss_bytes']['end'] / 2**20:.1f} MiB at the end "
            f"({r['rss_bytes_per_stream'] / 1024:.1f} KiB per stream)",
        ),
        (
            "client CPU",
            f"{r['client_cpu_seconds']:.2f} s ({r['client_cpu_utilisation']:.0%} of a core)",
        ),
    ]
    busy = sum(share >= 0.9 for share in cpu_seconds)
    saturated = None
    if r["server_cpu_utilisation"] > 0.9 or busy >= len(cpu_seconds) / 2:
        saturated = (
            f"the server's core was saturated ({busy} of {len(cpu_seconds)} seconds at 90% or "
            "more): replies wait for a claim, the delta writer gathers more tokens per event "
            "and the backend's pauses overrun, so every figure reflects the overload"
        )
    elif busy:
        saturated = (
            f"the server's core was saturated in {busy} of {len(cpu_seconds)} seconds "
            "(the burst of questions at the start, or the replies' peak)"
        )
    errors = [f"error: {example}" for example in r["error_examples"]]
    return render(report, run, rows, errors + caveats(r, saturated))


def main(args: argparse.Namespace) -> int:
    return harness.main(args, Params, SMOKE, run, format_table, failures)
