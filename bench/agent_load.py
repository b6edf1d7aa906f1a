"""The ``agents`` benchmark's load: one raw connection per agent session that asks a
question, follows the reply's stream, and drops and resumes it once when told to.

Also what prepares the run: questions sized to a number of tokens, their expected answers,
the sessions, and a warm-up reply.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import orjson

from bench import rawhttp
from royal.agents.local import LocalBackend, words

HOST = "127.0.0.1"
# Words that trigger none of the local backend's topics (alerts, jobs, status).
VOCABULARY = (
    "amber birch cobalt dune ember fjord garnet harbor indigo juniper kelp lumen maple nectar "
    "onyx pebble quartz russet saffron thistle umber violet willow yarrow zephyr"
).split()


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
        self.comments = 0
        self.error: str | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._tokens_seen = 0
        self._dropped = False
        self._last_id = 0
        self._ended = False
        self._chunked = True
        self._body = rawhttp.Dechunker()
        self._frames = rawhttp.Frames()

    @property
    def writes(self) -> int:
        """HTTP chunks received over both responses: one per server ``send()``."""
        return self._body.chunks

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
        self.writer.write(rawhttp.json_request(HOST, port, "/agents/message", token, body))
        payload = await rawhttp.read_response(self.reader, "POST /agents/message")
        self.post_answered = time.time()
        self.reply_id = int(orjson.loads(payload)["reply_id"])

    def _send_get(self, port: int, token: str, last_event_id: int | None) -> None:
        assert self.writer is not None
        path = f"/agents/stream?session_id={self.session_id}&reply_id={self.reply_id}"
        self.writer.write(rawhttp.stream_request(HOST, port, path, token, last_event_id))

    async def _follow(self) -> None:
        """Read one SSE response until the reply's end, a deliberate drop, or EOF."""
        assert self.reader is not None
        self._chunked = await rawhttp.read_stream_head(self.reader, "GET /agents/stream")
        self._ended = False
        self._body.start()
        self._frames = rawhttp.Frames()
        read = self.reader.read
        while not (self._ended or self._dropped):
            data = await read(262144)
            if not data:
                return
            self._feed(data, time.time())

    def _feed(self, data: bytes, now: float) -> None:
        if self._chunked:
            data = self._body.feed(data)
            self._ended = self._body.ended
        for frame in self._frames.split(data):
            if self._dropped or self.final_event is not None:
                return  # the rest is lost with the connection (and replayed on resume)
            if frame.startswith(b"id: "):
                self._event(*rawhttp.royal_event(frame), now)
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

    def _abort(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = self.reader = None


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
