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
import contextlib
import json
import math
import os
import random
import signal
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import machine
from bench.servers import RoyalServer
from bench.sse_fanout import Profiler, server_counters
from royal.agents.local import LocalBackend, words

SMOKE = {"streams": 20, "tokens": 50}
BENCH_USER = "bench-agent-user"
HOST = "127.0.0.1"
# Words that trigger none of the local backend's topics (alerts, jobs, status).
VOCABULARY = (
    "amber birch cobalt dune ember fjord garnet harbor indigo juniper kelp lumen maple nectar "
    "onyx pebble quartz russet saffron thistle umber violet willow yarrow zephyr"
).split()


@dataclass
class Params:
    streams: int = 1000
    tokens: int = 500
    token_seconds: float = 0.02
    resume_fraction: float = 0.1
    resume_delay: float = 0.5
    batch_seconds: float = 0.05
    connect_batch: int = 200
    timeout: float | None = None
    seed: int = 1
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
    parser = subparsers.add_parser(
        "agents",
        help="agent reply streams: token latency, time to first token, loss, CPU, memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = Params()
    parser.add_argument("--streams", "-n", type=int, default=defaults.streams)
    parser.add_argument(
        "--tokens", "-t", type=int, default=defaults.tokens, help="reply length in tokens"
    )
    parser.add_argument(
        "--token-seconds",
        type=float,
        default=defaults.token_seconds,
        help="ROYAL_AGENT_LOCAL_TOKEN_SECONDS: the backend's pause between tokens",
    )
    parser.add_argument(
        "--resume-fraction",
        type=float,
        default=defaults.resume_fraction,
        help="share of the streams that drop their connection once mid-reply and resume",
    )
    parser.add_argument(
        "--resume-delay",
        type=float,
        default=defaults.resume_delay,
        help="seconds between the drop and the reconnection with Last-Event-ID",
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=defaults.batch_seconds,
        help="ROYAL_AGENT_BATCH_SECONDS: how long the server gathers tokens into one event",
    )
    parser.add_argument("--connect-batch", type=int, default=defaults.connect_batch)
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds the replies get before the run gives up "
        "(default 3 x reply + 60 + 0.1 per stream)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="questions and drops")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default=defaults.loop)
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="run py-spy on the server worker during the replies (.txt: collapsed stacks, "
        "else a flamegraph SVG); the figures of a profiled run are skewed",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"a few seconds' run for CI ({SMOKE['streams']} streams x {SMOKE['tokens']} "
        "tokens); other sizes given are ignored",
    )
    parser.set_defaults(run=main)


# --- the load generator's streams ------------------------------------------------------------


class AgentStream:
    """One question and its reply over a raw asyncio connection, with at most one resume."""

    def __init__(self, session_id: str, question: str, answer: str, drop_after: int | None) -> None:
        self.session_id = session_id
        self.question = question
        self.answer = answer  # what the local backend will say
        self.drop_after = drop_after  # tokens received before the deliberate drop
        self.reply_id: int | None = None
        self.post_sent = self.post_answered = self.get_sent = 0.0
        self.resume_sent: float | None = None
        self.resume_from: int | None = None  # the Last-Event-ID sent
        self.resumed_at = 0  # events received before the resume
        # Every delta event, in the order received (duplicates included).
        self.ids: list[int] = []
        self.indices: list[int] = []
        self.arrivals: list[float] = []
        self.deltas: list[str] = []
        self.final_event: str | None = None
        self.final_data: dict[str, Any] | None = None
        self.final_at = 0.0
        self.other_events = 0
        self.id_regressions = 0
        self.writes = 0  # HTTP chunks: one per server send()
        self.comments = 0
        self.error: str | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._tokens_seen = 0
        self._dropped = False
        self._last_id = 0
        self._ended = False
        self._chunked = True
        self._raw = b""
        self._left = 0
        self._skip = 0
        self._sse = b""

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, port)

    async def run(self, port: int, token: str, resume_delay: float) -> None:
        """Ask, follow the reply, and if this stream drops, resume it once."""
        try:
            await self._ask(port, token)
            self.get_sent = time.time()
            self._send_get(port, token, None)
            await self._follow()
            if self._dropped:
                self._abort()
                await asyncio.sleep(resume_delay)
                await self.connect(port)
                self.resume_from, self.resumed_at = self.ids[-1], len(self.ids)
                self._dropped = False
                self.resume_sent = time.time()
                self._send_get(port, token, self.resume_from)
                await self._follow()
            if self.final_event is None:
                self.error = "the stream ended without done or error"
        except (OSError, RuntimeError, ValueError, KeyError, asyncio.IncompleteReadError) as error:
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self._abort()

    async def _ask(self, port: int, token: str) -> None:
        assert self.reader is not None and self.writer is not None
        question = {"session_id": self.session_id, "role": "user", "content": self.question}
        body = orjson.dumps(question)
        self.post_sent = time.time()
        self.writer.write(
            (
                f"POST /agents/message HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        payload = await self.reader.readexactly(length)
        self.post_answered = time.time()
        if head.split(b" ", 2)[1] != b"200":
            raise RuntimeError(f"POST /agents/message: {head.decode(errors='replace')}{payload!r}")
        self.reply_id = int(orjson.loads(payload)["reply_id"])

    def _send_get(self, port: int, token: str, last_event_id: int | None) -> None:
        assert self.writer is not None
        resume = "" if last_event_id is None else f"Last-Event-ID: {last_event_id}\r\n"
        self.writer.write(
            (
                f"GET /agents/stream?session_id={self.session_id}&reply_id={self.reply_id} "
                f"HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n"
                f"Accept: text/event-stream\r\n{resume}\r\n"
            ).encode()
        )

    async def _follow(self) -> None:
        """Read one SSE response until the reply's end, a deliberate drop, or EOF."""
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        if head.split(b" ", 2)[1] != b"200":
            body = await asyncio.wait_for(self.reader.read(2000), 2)
            raise RuntimeError(f"GET /agents/stream: {head.decode(errors='replace')}{body!r}")
        self._chunked = b"transfer-encoding: chunked" in head.lower()
        self._ended, self._raw, self._left, self._skip, self._sse = False, b"", 0, 0, b""
        read = self.reader.read
        while not (self._ended or self._dropped):
            data = await read(262144)
            if not data:
                return
            self._feed(data, time.time())

    def _feed(self, data: bytes, now: float) -> None:
        if self._chunked:
            data = self._dechunk(data)
        frames = (self._sse + data).split(b"\n\n") if self._sse else data.split(b"\n\n")
        self._sse = frames.pop()
        for frame in frames:
            if self._dropped or self.final_event is not None:
                return  # the rest is lost with the connection (and replayed on resume)
            if frame.startswith(b"id: "):
                # Royal's frames: "id: N\nevent: NAME\ndata: JSON" (compact JSON: one line).
                newline = frame.index(b"\n")
                name = b"message"
                if frame.startswith(b"event: ", newline + 1):
                    name = frame[newline + 8 : frame.index(b"\n", newline + 1)]
                data_at = frame.find(b"\ndata: ", newline)
                self._event(name, int(frame[4:newline]), frame[data_at + 7 :], now)
            elif frame.startswith(b":"):
                self.comments += 1
            elif not frame.startswith(b"retry:"):
                self.other_events += 1

    def _event(self, name: bytes, event_id: int, data: bytes, now: float) -> None:
        if event_id <= self._last_id:
            self.id_regressions += 1
        self._last_id = event_id
        payload = orjson.loads(data)
        if payload.get("message_id") != self.reply_id:
            self.other_events += 1
        elif name == b"message":
            delta: str = payload["delta"]
            self.ids.append(event_id)
            self.indices.append(payload["index"])
            self.arrivals.append(now)
            self.deltas.append(delta)
            if self.drop_after is not None and self.resume_sent is None:
                self._tokens_seen += len(delta.split())
                self._dropped = self._tokens_seen >= self.drop_after
        elif name in (b"done", b"error"):
            self.final_event, self.final_data, self.final_at = name.decode(), payload, now
            self._ended = True
        else:
            self.other_events += 1

    def _dechunk(self, data: bytes) -> bytes:
        buffer = self._raw + data if self._raw else data
        size = len(buffer)
        position = 0
        parts: list[bytes] = []
        while position < size:
            if self._left:
                end = position + self._left
                if end <= size:
                    parts.append(buffer[position:end])
                    self._left, self._skip, position = 0, 2, end
                else:
                    parts.append(buffer[position:])
                    self._left, position = end - size, size
            elif self._skip:
                taken = min(self._skip, size - position)
                self._skip -= taken
                position += taken
            else:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    break
                chunk_size = int(buffer[position:line_end].partition(b";")[0], 16)
                position = line_end + 2
                self.writes += 1
                if chunk_size == 0:
                    self._ended = True
                    position = size
                    break
                self._left = chunk_size
        self._raw = buffer[position:]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _abort(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = self.reader = None


# --- preparing the run -----------------------------------------------------------------------


async def expected_answer(question: str) -> str:
    """The local backend's reply to a question on none of its topics (no database needed)."""
    return await LocalBackend(None, 0.0).answer(question)  # type: ignore[arg-type]


async def make_questions(count: int, tokens: int, rng: random.Random) -> list[tuple[str, str]]:
    """``count`` distinct questions whose answers are ``tokens`` tokens long, with the answers."""
    overhead = len(words(await expected_answer("x"))) - 1
    if tokens <= overhead:
        raise SystemExit(f"--tokens must be more than {overhead} (the answer's fixed words)")
    made: list[tuple[str, str]] = []
    for n in range(count):
        question = " ".join([f"q{n}", *rng.choices(VOCABULARY, k=tokens - overhead - 1)])
        answer = await expected_answer(question)
        if len(words(answer)) != tokens or not answer.startswith("You asked:"):
            raise RuntimeError(f"the local backend answered {len(words(answer))} tokens")
        if len(question) > 4000:
            raise SystemExit("questions longer than 4,000 characters: use fewer --tokens")
        made.append((question, answer))
    return made


async def create_sessions(http: httpx.AsyncClient, count: int) -> list[str]:
    limit = asyncio.Semaphore(16)

    async def one() -> str:
        async with limit:
            response = await http.post("/agents/session")
        if response.status_code != 201:
            raise RuntimeError(f"POST /agents/session: {response.status_code} {response.text}")
        session_id: str = response.json()["session_id"]
        return session_id

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def warm_up(http: httpx.AsyncClient) -> None:
    """One short reply end to end: loads every code path before anything is measured."""
    (session_id,) = await create_sessions(http, 1)
    response = await http.post(
        "/agents/message",
        json={"session_id": session_id, "role": "user", "content": "warm amber birch"},
    )
    reply_id = response.json()["reply_id"]
    params = {"session_id": session_id, "reply_id": reply_id}
    headers = {"Accept": "text/event-stream"}
    async with http.stream("GET", "/agents/stream", params=params, headers=headers) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                if line == "event: done":
                    return
                if line == "event: error":
                    break
    raise RuntimeError("the warm-up reply did not end with done")


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float  # seconds since the window started
    server_cpu: float
    rss: int
    finished: int


async def monitor(
    pid: int, started: float, tasks: list[asyncio.Task[None]], samples: list[Sample]
) -> None:
    """Server CPU and RSS once a second while the replies run."""
    while True:
        await asyncio.sleep(1.0)
        samples.append(
            Sample(
                time.perf_counter() - started,
                machine.cpu_seconds(pid),
                machine.rss_bytes(pid),
                sum(task.done() for task in tasks),
            )
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
    counters_before = await server_counters(server)
    rss_start = machine.rss_bytes(pid)

    connect_started = time.perf_counter()
    for start in range(0, len(streams), params.connect_batch):
        group = streams[start : start + params.connect_batch]
        await asyncio.wait_for(asyncio.gather(*(s.connect(server.port) for s in group)), 60)
    connect_seconds = time.perf_counter() - connect_started

    profiler = Profiler(params.profile, pid, params.reply_seconds + 2)
    cores_start = machine.core_times()
    processes_start = machine.all_processes_cpu()
    server_cpu_start = machine.cpu_seconds(pid)
    client_cpu_start = machine.own_cpu_seconds()
    started = time.perf_counter()
    started_at = time.time()
    tasks = [asyncio.create_task(s.run(server.port, token, params.resume_delay)) for s in streams]
    samples = [Sample(0.0, server_cpu_start, rss_start, 0)]
    sampler = asyncio.create_task(monitor(pid, started, tasks, samples))
    _, pending = await asyncio.wait(tasks, timeout=params.deadline)
    window = time.perf_counter() - started
    server_cpu = machine.cpu_seconds(pid) - server_cpu_start
    client_cpu = machine.own_cpu_seconds() - client_cpu_start
    cores_end = machine.core_times()
    processes_end = machine.all_processes_cpu()
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
    counters_after = await server_counters(server)
    await asyncio.to_thread(profiler.wait)

    results = {
        "window_seconds": window,
        "window_started_at": started_at,
        "server_cpu_seconds": server_cpu,
        "server_cpu_utilisation": server_cpu / window,
        "client_cpu_seconds": client_cpu,
        "client_cpu_utilisation": client_cpu / window,
        # Other processes during the window (a profiler included), and interrupt time (mostly
        # the loopback network stack working for the benchmark itself): see the sse bench.
        "background_cpu_seconds": machine.other_processes_cpu(
            processes_start, processes_end, {os.getpid(), *server.pids()}
        ),
        "interrupt_seconds": {
            f"core{core}": cores_end[core].interrupts - cores_start[core].interrupts
            for core in sorted(cores_end)
        },
        "steal_seconds": sum(cores_end[core].steal - cores_start[core].steal for core in cores_end),
        "connect_seconds": connect_seconds,
        "rss_bytes": {"before": rss_start, "peak_with_streams": rss_peak, "end": rss_end},
        "rss_bytes_per_stream": (rss_peak - rss_start) / params.streams,
        "server_counters": {
            key: counters_after.get(key, 0) - counters_before.get(key, 0)
            for key in ("published", "dispatched", "delivered", "catchups", "replayed", "resets")
        },
        "profiled": params.profile is not None,
    }
    results |= analyse(server.database_path, streams, started_at, samples)
    return results


# --- checking and summarising ------------------------------------------------------------------


def _epoch(created_at: str) -> float:
    """``2024-05-01T12:00:00.123Z`` (SQLite's strftime, truncated to the millisecond)."""
    return datetime.fromisoformat(created_at).timestamp()


def analyse(
    database: Path, streams: list[AgentStream], started_at: float, samples: list[Sample]
) -> dict[str, Any]:
    """Compare what every stream received with the event log and the stored replies."""
    topics = {f"agent:{stream.session_id}": stream for stream in streams}
    rows: dict[str, list[tuple[int, str, dict[str, Any], float]]] = defaultdict(list)
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
        # When each reply's job was queued (with the POST) and claimed by the agents lane.
        job_times: dict[int, dict[str, float]] = defaultdict(dict)
        for event, data, created_at in db.execute(
            "SELECT event, data, created_at FROM stream_events WHERE topic = 'jobs' "
            "AND event IN ('job.queued', 'job.running') ORDER BY id"
        ):
            job_times[orjson.loads(data)["id"]].setdefault(event, _epoch(created_at))

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
            final = [row[3] for row in reply_rows if row[1] in ("done", "error")]
            if final:
                spans += [(job["job.running"], 1), (final[0], -1)]
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
        "token_latency_ms": summary(latencies),
        "live_deltas": len(latencies),
        "deltas_committed_before_get": opened_late,
        "replayed_after_resume": len(replayed),
        "resume_catch_up_ms": summary(replayed),
        "time_to_first_token_ms": summary(ttft),
        "first_token_committed_ms": summary(first_commit),
        "post_ms": summary(post_seconds),
        "job_queued_ms": summary(queued),
        "job_waiting_ms": summary(waiting),
        "claim_to_first_delta_ms": summary(starting),
        "claims_by_second": [[second, claims[second]] for second in sorted(claims)],
        "peak_replies_generating": peak,
        "token_rate_per_stream": summary(rates, scale=1.0),
        "events_per_stream_second": summary(event_rates, scale=1.0),
        "stream_seconds": summary(durations, scale=1.0),
        "server_cpu_us_per_token": None,  # filled in by run()
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


def summary(values: list[float], scale: float = 1e3) -> dict[str, float | None]:
    """Percentiles (ms by default; ``scale=1`` keeps the unit); ``min`` for rates."""
    ordered = sorted(value for value in values if math.isfinite(value))

    def at(fraction: float) -> float | None:
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * scale

    return {
        "count": len(ordered),
        "min": ordered[0] * scale if ordered else None,
        "p01": at(0.01),
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": ordered[-1] * scale if ordered else None,
        "mean": sum(ordered) / len(ordered) * scale if ordered else None,
    }


def run(params: Params) -> dict[str, Any]:
    environment = machine.environment(("httpx", "orjson"))
    cores = machine.Cores.choose()
    environment["calibration_ms"] = calibration = {
        "server_core": machine.calibrate(cores.server),
        "client_core": machine.calibrate(cores.client),
    }
    # Each stream holds a descriptor on both sides (two while it resumes).
    machine.raise_fd_limit(2 * params.streams + 1024)
    env = {
        "ROYAL_AGENT_CONCURRENCY": str(params.streams + 1),
        "ROYAL_AGENT_LOCAL_TOKEN_SECONDS": str(params.token_seconds),
        "ROYAL_AGENT_BATCH_SECONDS": str(params.batch_seconds),
        "ROYAL_JOB_POLL_SECONDS": "0.1",
    }
    with RoyalServer(env, core=cores.server) as server:
        token = server.seed_user(BENCH_USER, "viewer")
        machine.pin_thread(cores.client)
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
        if params.loop == "uvloop":
            import uvloop

            loop_factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            results = runner.run(measure(server, params, token))
    if results["tokens"]:
        results["server_cpu_us_per_token"] = results["server_cpu_seconds"] / results["tokens"] * 1e6
    calibration["server_core_after"] = machine.calibrate(cores.server)
    calibration["client_core_after"] = machine.calibrate(cores.client)
    return {
        "benchmark": "agent_streams",
        "target": server.name,
        "environment": environment,
        "cores": {"server": cores.server, "client": cores.client},
        "parameters": asdict(params)
        | {"reply_seconds": params.reply_seconds, "resumed": params.resumed},
        "server": server.settings(),
        "results": results,
    }


def failures(report: dict[str, Any]) -> list[str]:
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


def format_table(report: dict[str, Any]) -> str:
    p, r, e = report["parameters"], report["results"], report["environment"]
    calibration = e["calibration_ms"]
    packages = e["packages"]

    def num(value: float | None, spec: str = ".1f") -> str:
        return "-" if value is None else format(value, spec)

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
    rows = [
        ("target", f"{report['target']} ({report['server']['config']}, 1 worker)"),
        (
            "machine",
            f"{e['cores']} cores ({e['cpu_model']}), server core {report['cores']['server']}, "
            f"client core {report['cores']['client']}; calibration (server/client core, "
            f"before -> after) {calibration['server_core']:.1f} / "
            f"{calibration['client_core']:.1f} -> {calibration['server_core_after']:.1f} / "
            f"{calibration['client_core_after']:.1f} ms",
        ),
        (
            "versions",
            f"Python {e['python']}, Quart {packages['quart']}, Hypercorn {packages['hypercorn']}, "
            f"h11 {packages['h11']}, uvloop {packages['uvloop']}, "
            f"royal {e['git_revision'] or '(not a git checkout)'}",
        ),
        (
            "run",
            f"{p['streams']:,} streams x {p['tokens']} tokens at {1 / p['token_seconds']:g} "
            f"tokens/s ({p['reply_seconds']:.1f} s a reply), batch {p['batch_seconds']:g} s, "
            f"{p['resumed']} resumed after {p['resume_delay']:g} s",
        ),
        ("", ""),
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
            f"p50 {num(rate['p50'])}, p01 {num(rate['p01'])}, min {num(rate['min'])} tokens/s; "
            f"events p50 {num(event_rate['p50'])}/s",
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
            f"{num(r['server_cpu_us_per_token'])} µs per token",
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
        ("server counters", ", ".join(f"{k} {v:,}" for k, v in r["server_counters"].items())),
        (
            "background load",
            "other processes {:.2f} CPU-s, steal {:.2f} s; interrupts {}".format(
                r["background_cpu_seconds"],
                r["steal_seconds"],
                ", ".join(f"{k} {v:.2f} s" for k, v in r["interrupt_seconds"].items()),
            ),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" if name else "" for name, value in rows]
    notes = [f"error: {example}" for example in r["error_examples"]]
    if r["client_cpu_utilisation"] > 0.9:
        notes.append("the client used over 90% of its core: latencies include its own queueing")
    busy = sum(share >= 0.9 for share in cpu_seconds)
    if r["server_cpu_utilisation"] > 0.9 or busy >= len(cpu_seconds) / 2:
        notes.append(
            f"the server's core was saturated ({busy} of {len(cpu_seconds)} seconds at 90% or "
            "more): replies wait for a claim, the delta writer gathers more tokens per event "
            "and the backend's pauses overrun, so every figure reflects the overload"
        )
    elif busy:
        notes.append(
            f"the server's core was saturated in {busy} of {len(cpu_seconds)} seconds "
            "(the burst of questions at the start, or the replies' peak)"
        )
    if r["background_cpu_seconds"] + r["steal_seconds"] > 0.05 * r["window_seconds"]:
        notes.append(
            "other processes used over 5% of a core meanwhile: the machine was not quiet, "
            "repeat the run"
        )
    if r["profiled"]:
        notes.append("py-spy was sampling the server: these figures are skewed")
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    params = Params(
        streams=args.streams,
        tokens=args.tokens,
        token_seconds=args.token_seconds,
        resume_fraction=args.resume_fraction,
        resume_delay=args.resume_delay,
        batch_seconds=args.batch_seconds,
        connect_batch=args.connect_batch,
        timeout=args.timeout,
        seed=args.seed,
        loop=args.loop,
        profile=args.profile,
        smoke=args.smoke,
    )
    if params.smoke:
        for name, value in SMOKE.items():
            setattr(params, name, value)
    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so the server is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run(params)
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    problems = failures(report)
    if problems:
        print(f"FAILED: {', '.join(problems)}", file=sys.stderr)
        return 1
    return 0
