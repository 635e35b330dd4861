"""Unit tests for the circuit breaker state machine (fake clocks, no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mcp_router.resilience import CircuitBreaker, CircuitState, Permit

WALL_START = datetime(2026, 11, 25, 3, 9, 18, tzinfo=UTC).timestamp()


class FakeClock:
    """A monotonic clock and a matching wall clock that only move when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_START + (self.now - 1000.0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(
    clock: FakeClock, *, threshold: int = 3, timeout: float = 60, attempts: int = 2
) -> CircuitBreaker:
    return CircuitBreaker(
        "db",
        failure_threshold=threshold,
        timeout_seconds=timeout,
        half_open_attempts=attempts,
        clock=clock.monotonic,
        wall_clock=clock.wall,
    )


def fail(breaker: CircuitBreaker, times: int = 1, reason: str = "boom") -> None:
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        permit.failure(reason)


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        permit.success()


def open_then_half_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, breaker.failure_threshold)
    assert breaker.state is CircuitState.OPEN
    clock.advance(breaker.timeout_seconds)
    assert breaker.state is CircuitState.HALF_OPEN


def test_starts_closed_and_admits(clock: FakeClock) -> None:
    breaker = make(clock)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow()
    permit = breaker.acquire()
    assert isinstance(permit, Permit)
    assert not permit.is_trial
    assert breaker.opened_at is None
    assert breaker.retry_in() == 0
    assert breaker.retry_at_wall() is None


def test_stays_closed_below_threshold(clock: FakeClock) -> None:
    breaker = make(clock, threshold=3)
    fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.consecutive_failures == 2
    assert breaker.total_failures == 2
    assert breaker.last_failure_reason == "boom"
    assert breaker.allow()


def test_opens_at_threshold(clock: FakeClock) -> None:
    breaker = make(clock, threshold=3)
    fail(breaker, 3)
    assert breaker.state is CircuitState.OPEN
    assert breaker.opened_at == clock.now
    assert breaker.consecutive_failures == 3


def test_success_resets_consecutive_count(clock: FakeClock) -> None:
    breaker = make(clock, threshold=3)
    fail(breaker, 2)
    succeed(breaker)
    assert breaker.consecutive_failures == 0
    fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.total_failures == 4
    assert breaker.total_successes == 1


def test_open_rejects(clock: FakeClock) -> None:
    breaker = make(clock, threshold=1, timeout=60)
    fail(breaker)
    assert not breaker.allow()
    assert breaker.acquire() is None
    clock.advance(59.9)
    assert breaker.state is CircuitState.OPEN
    assert breaker.acquire() is None
    assert breaker.retry_in() == pytest.approx(0.1)
    assert breaker.retry_at_wall() == pytest.approx(clock.wall() + 0.1)


def test_half_open_after_timeout(clock: FakeClock) -> None:
    breaker = make(clock, threshold=1, timeout=30)
    fail(breaker)
    clock.advance(30)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.retry_in() == 0
    assert breaker.retry_at_wall() is None


def test_half_open_transition_is_lazy_on_acquire(clock: FakeClock) -> None:
    breaker = make(clock, threshold=1, timeout=30)
    fail(breaker)
    clock.advance(31)
    permit = breaker.acquire()
    assert permit is not None
    assert permit.is_trial
    assert breaker.state is CircuitState.HALF_OPEN


def test_half_open_admits_only_half_open_attempts_trials(clock: FakeClock) -> None:
    breaker = make(clock, attempts=2)
    open_then_half_open(breaker, clock)
    first = breaker.acquire()
    second = breaker.acquire()
    assert first is not None and second is not None
    assert first.is_trial and second.is_trial
    assert breaker.acquire() is None
    assert not breaker.allow()
    assert breaker.half_open_trials_in_flight == 2
    # A success keeps its slot used (in_flight + successes < attempts), so still no admission.
    first.success()
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.half_open_successes == 1
    assert breaker.acquire() is None


def test_closes_after_half_open_attempts_successes(clock: FakeClock) -> None:
    breaker = make(clock, attempts=3)
    open_then_half_open(breaker, clock)
    permits = [breaker.acquire() for _ in range(3)]
    assert all(p is not None for p in permits)
    for permit in permits[:2]:
        assert permit is not None
        permit.success()
        assert breaker.state is CircuitState.HALF_OPEN
    last = permits[2]
    assert last is not None
    last.success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.consecutive_failures == 0
    assert breaker.opened_at is None
    assert breaker.allow()


def test_trial_failure_reopens_with_new_timeout(clock: FakeClock) -> None:
    breaker = make(clock, timeout=60, attempts=2)
    open_then_half_open(breaker, clock)
    trial = breaker.acquire()
    other = breaker.acquire()
    assert trial is not None and other is not None
    clock.advance(5)
    trial.failure("still down")
    assert breaker.state is CircuitState.OPEN
    assert breaker.opened_at == clock.now
    assert breaker.retry_in() == pytest.approx(60)
    assert breaker.last_failure_reason == "still down"
    # The other trial's late success belongs to the dead half-open period.
    other.success()
    assert breaker.state is CircuitState.OPEN
    clock.advance(59)
    assert breaker.state is CircuitState.OPEN
    clock.advance(1)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.half_open_successes == 0


def test_stale_closed_era_permit_does_not_affect_half_open(clock: FakeClock) -> None:
    breaker = make(clock, threshold=2, attempts=2)
    slow_ok = breaker.acquire()
    slow_bad = breaker.acquire()
    assert slow_ok is not None and slow_bad is not None
    fail(breaker, 2)
    assert breaker.state is CircuitState.OPEN
    clock.advance(breaker.timeout_seconds)
    assert breaker.state is CircuitState.HALF_OPEN

    # Closed-era outcomes arriving now: counted in totals, but no trial accounting.
    slow_ok.success()
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.half_open_successes == 0
    slow_bad.failure("late timeout")
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.total_successes == 1
    assert breaker.total_failures == 3

    # Both trial slots are still available.
    first = breaker.acquire()
    second = breaker.acquire()
    assert first is not None and second is not None
    assert breaker.acquire() is None
    first.success()
    second.success()
    assert breaker.state is CircuitState.CLOSED


def test_stale_failures_after_opening_do_not_extend_open(clock: FakeClock) -> None:
    breaker = make(clock, threshold=2, timeout=10)
    permits = [breaker.acquire() for _ in range(4)]
    for permit in permits[:2]:
        assert permit is not None
        permit.failure("x")
    assert breaker.state is CircuitState.OPEN
    opened = breaker.opened_at
    clock.advance(5)
    for permit in permits[2:]:
        assert permit is not None
        permit.failure("x")
    assert breaker.opened_at == opened
    assert breaker.consecutive_failures == 2
    clock.advance(5)
    assert breaker.state is CircuitState.HALF_OPEN


def test_permit_records_at_most_once(clock: FakeClock) -> None:
    breaker = make(clock, threshold=2)
    permit = breaker.acquire()
    assert permit is not None
    permit.failure("first")
    permit.failure("second")
    permit.success()
    permit.release()
    assert breaker.total_failures == 1
    assert breaker.total_successes == 0
    assert breaker.consecutive_failures == 1
    assert breaker.last_failure_reason == "first"
    assert breaker.state is CircuitState.CLOSED


def test_trial_permit_records_once(clock: FakeClock) -> None:
    breaker = make(clock, attempts=2)
    open_then_half_open(breaker, clock)
    trial = breaker.acquire()
    assert trial is not None
    trial.success()
    trial.success()
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.half_open_successes == 1
    assert breaker.half_open_trials_in_flight == 0


def test_release_frees_a_trial_slot_without_counting(clock: FakeClock) -> None:
    breaker = make(clock, attempts=1)
    open_then_half_open(breaker, clock)
    trial = breaker.acquire()
    assert trial is not None
    assert breaker.acquire() is None
    failures, successes = breaker.total_failures, breaker.total_successes
    trial.release()
    assert breaker.state is CircuitState.HALF_OPEN
    assert (breaker.total_failures, breaker.total_successes) == (failures, successes)
    assert breaker.allow()
    again = breaker.acquire()
    assert again is not None
    again.success()
    assert breaker.state is CircuitState.CLOSED


def test_release_in_closed_is_neutral(clock: FakeClock) -> None:
    breaker = make(clock, threshold=2)
    fail(breaker)
    permit = breaker.acquire()
    assert permit is not None
    permit.release()
    assert breaker.consecutive_failures == 1
    assert breaker.total_successes == 0


def test_force_open_from_closed(clock: FakeClock) -> None:
    breaker = make(clock, timeout=60)
    inflight = breaker.acquire()
    assert inflight is not None
    breaker.force_open("health probe: ping timed out")
    assert breaker.state is CircuitState.OPEN
    assert breaker.last_failure_reason == "health probe: ping timed out"
    assert breaker.total_failures == 0
    assert breaker.acquire() is None
    # A call admitted before the probe is stale now.
    inflight.success()
    assert breaker.state is CircuitState.OPEN
    assert "circuit was forced open" in breaker.open_error()


def test_force_open_while_open_restarts_the_timeout(clock: FakeClock) -> None:
    breaker = make(clock, threshold=1, timeout=60)
    fail(breaker)
    clock.advance(70)  # timeout elapsed but not yet observed
    breaker.force_open("dead")
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_in() == pytest.approx(60)


def test_force_open_from_half_open_invalidates_trials(clock: FakeClock) -> None:
    breaker = make(clock, attempts=1)
    open_then_half_open(breaker, clock)
    trial = breaker.acquire()
    assert trial is not None
    breaker.force_open("dead")
    assert breaker.state is CircuitState.OPEN
    trial.success()
    assert breaker.state is CircuitState.OPEN
    clock.advance(breaker.timeout_seconds)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow()


def test_open_error_message(clock: FakeClock) -> None:
    breaker = make(clock, threshold=5, timeout=60)
    fail(breaker, 5, reason="connection refused")
    clock.advance(18)
    message = breaker.open_error()
    assert message.startswith(
        "backend 'db' circuit is open after 5 consecutive failures; "
        "next attempt at 2026-11-25T03:10:18Z (in 42.0s)"
    )
    assert message.endswith("; last failure: connection refused")


def test_open_error_when_half_open_slots_taken(clock: FakeClock) -> None:
    breaker = make(clock, attempts=1)
    open_then_half_open(breaker, clock)
    assert breaker.acquire() is not None
    assert breaker.open_error().startswith(
        "backend 'db' circuit is half-open and all trial slots are taken; "
    )
    assert "(in 0.0s)" in breaker.open_error()


def test_snapshot(clock: FakeClock) -> None:
    breaker = make(clock, threshold=2, timeout=30)
    snap = breaker.snapshot()
    assert snap["state"] == "closed"
    assert snap["retry_in_seconds"] == 0
    assert snap["retry_at"] is None
    fail(breaker, 2, reason="reset by peer")
    assert breaker.acquire() is None
    clock.advance(10)
    snap = breaker.snapshot()
    assert snap["state"] == "open"
    assert snap["consecutive_failures"] == 2
    assert snap["total_failures"] == 2
    assert snap["total_successes"] == 0
    assert snap["retry_in_seconds"] == pytest.approx(20)
    assert snap["retry_at"] == "2026-11-25T03:09:48Z"
    assert snap["last_failure_reason"] == "reset by peer"


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_threshold": 0}, {"timeout_seconds": -1}, {"half_open_attempts": 0}],
)
def test_rejects_invalid_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("db", **kwargs)  # type: ignore[arg-type]


def test_trial_now_moves_an_open_circuit_to_half_open_before_its_timeout() -> None:
    clock = [0.0]
    breaker = CircuitBreaker("db", failure_threshold=1, timeout_seconds=60, clock=lambda: clock[0])
    permit = breaker.acquire()
    assert permit is not None
    permit.failure("boom")
    assert breaker.state is CircuitState.OPEN
    clock[0] = 1.0  # far from the 60 s timeout
    breaker.trial_now()
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.acquire() is not None  # a trial call is admitted at once


def test_trial_now_leaves_a_closed_circuit_closed() -> None:
    breaker = CircuitBreaker("db")
    breaker.trial_now()
    assert breaker.state is CircuitState.CLOSED
