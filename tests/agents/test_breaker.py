"""The circuit breaker's state machine, on a clock the test moves by hand."""

from __future__ import annotations

import pytest

from royal.agents.backend import BackendError
from royal.agents.breaker import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="breaker")
def _breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(3, 10.0, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.before_call()
        breaker.record_failure()


def assert_refused(breaker: CircuitBreaker) -> None:
    with pytest.raises(BackendError) as caught:
        breaker.before_call()
    assert caught.value.code == "circuit_open"


def test_starts_closed(breaker: CircuitBreaker) -> None:
    breaker.before_call()
    assert breaker.status() == {
        "state": "closed",
        "consecutive_failures": 0,
        "opened_at": None,
        "retry_in_seconds": None,
        "opens": 0,
    }


def test_opens_at_the_threshold_of_consecutive_failures(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.state == "closed"
    fail(breaker, 1)
    status = breaker.status()
    assert status["state"] == "open"
    assert status["consecutive_failures"] == 3
    assert status["retry_in_seconds"] == 10.0
    assert isinstance(status["opened_at"], float)
    assert status["opens"] == 1
    assert_refused(breaker)


def test_a_success_resets_the_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.before_call()
    breaker.record_success()
    fail(breaker, 2)
    assert breaker.status()["consecutive_failures"] == 2
    assert breaker.state == "closed"


def test_stays_open_until_the_reset_time(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 9.5
    assert breaker.status()["retry_in_seconds"] == 0.5
    assert_refused(breaker)
    clock.now += 0.5
    assert breaker.state == "half_open"
    assert breaker.status()["retry_in_seconds"] == 0.0


def test_half_open_lets_exactly_one_probe_through(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 10
    breaker.before_call()
    assert_refused(breaker)
    assert_refused(breaker)


def test_a_successful_probe_closes(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 10
    breaker.before_call()
    breaker.record_success()
    assert breaker.status() == {
        "state": "closed",
        "consecutive_failures": 0,
        "opened_at": None,
        "retry_in_seconds": None,
        "opens": 1,
    }
    breaker.before_call()


def test_a_failed_probe_reopens_with_a_fresh_timer(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 15
    breaker.before_call()
    breaker.record_failure()
    status = breaker.status()
    assert status["state"] == "open"
    assert status["retry_in_seconds"] == 10.0
    assert status["opens"] == 2
    assert_refused(breaker)
    clock.now += 10
    breaker.before_call()  # the next probe


def test_release_frees_the_probe_slot(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 10
    breaker.before_call()
    breaker.release()  # the probe's caller went away without a verdict
    assert breaker.state == "half_open"
    breaker.before_call()
    assert_refused(breaker)


def test_release_when_closed_changes_nothing(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.before_call()
    breaker.release()
    assert breaker.status()["consecutive_failures"] == 2
    assert breaker.state == "closed"


def test_late_failures_while_open_do_not_reset_the_timer(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 4
    breaker.record_failure()  # a call that started before it opened
    status = breaker.status()
    assert status["retry_in_seconds"] == 6.0
    assert status["opens"] == 1


@pytest.mark.parametrize(("threshold", "reset"), [(0, 1.0), (1, -1.0)])
def test_refuses_nonsense_settings(threshold: int, reset: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, reset)
