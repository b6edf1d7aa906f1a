"""The per-process PostgreSQL LISTEN connection that wakes the stream dispatcher.

A notification only says "the log grew"; the ``stream_events`` table stays the truth. So after
every (re)connect and on every slow fallback tick the dispatcher is woken with ``None``,
meaning "re-read from your cursor": notifications sent while we were away are simply lost.
The connection is dedicated, never pooled, because a pool would reset it and drop the LISTEN.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]

logger = logging.getLogger(__name__)

_CLOSE_TIMEOUT = 2.0


class PostgresListener:
    """Holds one dedicated asyncpg connection LISTENing on a channel; wakes the dispatcher."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        wake: Callable[[int | None], None],
        *,
        fallback_poll_seconds: float = 5.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._wake = wake
        self._fallback = fallback_poll_seconds
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._connect_timeout = connect_timeout
        self._connection: Any = None  # asyncpg ships no type information
        self._last_poll = time.monotonic()
        self._ever_connected = False
        self._in_outage = False
        self.backend_pid: int | None = None
        self.connect_attempts = 0
        self.reconnects = 0
        self.notifications = 0
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    def status(self) -> dict[str, Any]:
        """What ``/readyz`` reports about the listener."""
        return {
            "connected": self.connected,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
        }

    async def run(self) -> None:
        """Listen, and reconnect with jittered exponential backoff, until cancelled."""
        delay = self._backoff_initial
        while True:
            self.connect_attempts += 1
            try:
                connection, lost = await self._connect()
            except Exception as error:  # any failure to connect means: wait and retry
                self._failed(f"{type(error).__name__}: {error}")
            else:
                delay = self._backoff_initial
                self._up(connection)
                try:
                    reason = await self._watch(connection, lost)
                except BaseException:  # cancelled: close politely, but never hang
                    await _close(connection)
                    raise
                finally:
                    self._connection = self.backend_pid = None
                connection.terminate()  # already dead or unresponsive: no goodbye
                self._failed(reason)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self._backoff_max)
            if time.monotonic() - self._last_poll >= self._fallback:
                self._poll()  # the table may be reachable even when LISTEN is not

    async def _connect(self) -> tuple[Any, asyncio.Event]:
        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            server_settings={"application_name": "royal-listener"},
        )
        lost = asyncio.Event()  # one per connection, so a late callback cannot hit the next
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(self._channel, self._notified)
        except BaseException:
            await _close(connection)
            raise
        return connection, lost

    async def _watch(self, connection: Any, lost: asyncio.Event) -> str:
        """Return why the connection is no longer usable; poll and ping on every tick."""
        while True:
            try:
                async with asyncio.timeout(self._fallback):
                    await lost.wait()
            except TimeoutError:
                pass
            else:
                return "ConnectionLost: listener connection terminated"
            self._poll()
            if connection.is_closed():
                return "ConnectionLost: listener connection closed"
            try:  # a silently dropped TCP connection only shows up when we use it
                await connection.fetchval("SELECT 1", timeout=self._connect_timeout)
            except Exception as error:
                return f"KeepAliveFailed: {type(error).__name__}: {error}"

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        try:
            event_id: int | None = int(payload)
        except ValueError:
            event_id = None
        self._call_wake(event_id)

    def _poll(self) -> None:
        self._last_poll = time.monotonic()
        self._call_wake(None)

    def _call_wake(self, event_id: int | None) -> None:
        try:
            self._wake(event_id)
        except Exception:  # the dispatcher's bug must not silence the listener
            logger.exception("stream listener: wake callback failed")

    def _up(self, connection: Any) -> None:
        self._connection = connection
        self.backend_pid = connection.get_server_pid()
        if self._ever_connected:
            self.reconnects += 1
        if self._in_outage:
            logger.info("stream listener: listening on %r again", self._channel)
        self._ever_connected = True
        self._in_outage = False
        self._poll()

    def _failed(self, reason: str) -> None:
        self.last_error = reason[:200]
        if not self._in_outage:
            logger.warning("stream listener: not listening, retrying: %s", self.last_error)
        self._in_outage = True


async def _close(connection: Any) -> None:
    try:
        await asyncio.wait_for(connection.close(), _CLOSE_TIMEOUT)
    except asyncio.CancelledError:
        connection.terminate()
        raise
    except Exception:  # timed out or failed: drop the socket
        connection.terminate()
