"""A circuit breaker: stop calling an upstream that keeps failing, then probe it once in a while.

Closed, calls go through and consecutive failures are counted. At ``failure_threshold`` it
opens: calls fail at once with ``circuit_open`` instead of each waiting out a timeout. After
``reset_seconds`` it is half-open: exactly one probe goes through; its success closes the
circuit, its failure opens it again for another ``reset_seconds``.

Framework-free and not thread-safe: one event loop owns it, and no method awaits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from royal.agents.backend import BackendError

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Guards one upstream. Call :meth:`before_call` before each attempt, then exactly one of
    :meth:`record_success`, :meth:`record_failure` or :meth:`release` when it ends.
    """

    def __init__(
        self,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {failure_threshold}")
        if reset_seconds < 0:
            raise ValueError(f"reset_seconds must not be negative, not {reset_seconds}")
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._open = False  # half-open is "open, and the reset time has passed"
        self._opened_at: float | None = None  # on self._clock
        self._opened_wall: float | None = None  # the same moment as a Unix time, for people
        self._probing = False
        self._failures = 0
        self._opens = 0

    @property
    def state(self) -> State:
        if not self._open:
            return "closed"
        return "half_open" if self._retry_in() == 0 else "open"

    def before_call(self) -> None:
        """Let a call through, or raise ``BackendError("circuit_open")``.

        When half-open, the first caller becomes the probe and everyone else is refused until
        it reports back.
        """
        state = self.state
        if state == "closed":
            return
        if state == "open":
            raise BackendError(
                "circuit_open",
                f"the upstream failed {self._failures} times in a row; "
                f"next try in {self._retry_in():.1f} s",
            )
        if self._probing:
            raise BackendError("circuit_open", "the upstream is being probed; try again shortly")
        self._probing = True

    def record_success(self) -> None:
        self._open = self._probing = False
        self._opened_at = self._opened_wall = None
        self._failures = 0

    def record_failure(self) -> None:
        """Count a failure the upstream caused; open at the threshold or when a probe fails."""
        self._failures += 1
        if self._probing or (not self._open and self._failures >= self.failure_threshold):
            self._trip()

    def release(self) -> None:
        """End a call without a verdict (the caller went away, or the request itself was bad).

        It frees the probe slot so that a cancelled probe cannot leave the circuit half-open
        and refusing forever.
        """
        self._probing = False

    def status(self) -> dict[str, Any]:
        """State for /readyz and metrics; ``opened_at`` is a Unix time."""
        retry_in = self._retry_in() if self._open else None
        return {
            "state": self.state,
            "consecutive_failures": self._failures,
            "opened_at": self._opened_wall,
            "retry_in_seconds": None if retry_in is None else round(retry_in, 3),
            "opens": self._opens,
        }

    def _trip(self) -> None:
        self._open, self._probing = True, False
        self._opened_at, self._opened_wall = self._clock(), time.time()
        self._opens += 1

    def _retry_in(self) -> float:
        assert self._opened_at is not None
        return max(0.0, self._opened_at + self.reset_seconds - self._clock())
