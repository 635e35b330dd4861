"""Per-backend circuit breaker: a pure, clock-injected state machine.

States and transitions (see DESIGN.md, "Health and circuit breakers"):

* ``CLOSED`` -> ``OPEN`` after ``failure_threshold`` consecutive failures; a success resets the
  consecutive count.
* ``OPEN`` -> ``HALF_OPEN`` once ``timeout_seconds`` have passed. The transition is evaluated
  lazily, whenever the state is read or admission is asked for; no timer runs.
* ``HALF_OPEN`` admits only trial calls, at most ``half_open_attempts`` of them outstanding or
  succeeded in the current half-open period. ``half_open_attempts`` successful trials close the
  circuit; any trial failure opens it again with a fresh timeout.

Every call is admitted through :meth:`CircuitBreaker.acquire`, which returns a :class:`Permit`.
The permit remembers the state period it was issued in, so an outcome that arrives late (a call
admitted while CLOSED that fails after the circuit opened, or a trial from an earlier half-open
period) is counted in the totals but never moves the state machine or the trial accounting of a
later period. A permit records at most one outcome: a call that is retried internally and then
reports success counts once.

The breaker is designed for a single asyncio event loop (no locking); it performs no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "CircuitBreaker",
    "CircuitState",
    "Permit",
]


class CircuitState(StrEnum):
    """The three states of a circuit breaker (a ``str`` enum: members compare equal to values)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def _format_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Permit:
    """Admission ticket for one call through a :class:`CircuitBreaker`.

    Report the outcome exactly once with :meth:`success`, :meth:`failure` or :meth:`release`
    (neither success nor failure, e.g. the call was cancelled or never sent). Further calls are
    ignored, so a permit records at most one outcome.
    """

    __slots__ = ("_breaker", "_done", "is_trial", "period")

    def __init__(self, breaker: CircuitBreaker, period: int, is_trial: bool) -> None:
        self._breaker = breaker
        self._done = False
        self.period = period
        self.is_trial = is_trial

    def success(self) -> None:
        """Record that the call succeeded."""
        if self._done:
            return
        self._done = True
        self._breaker._record_success(self)

    def failure(self, reason: str) -> None:
        """Record that the call failed (transport failure, timeout, ...)."""
        if self._done:
            return
        self._done = True
        self._breaker._record_failure(self, reason)

    def release(self) -> None:
        """Give the permit back without an outcome; frees a half-open trial slot."""
        if self._done:
            return
        self._done = True
        self._breaker._record_release(self)


class CircuitBreaker:
    """Circuit breaker for one backend.

    ``clock`` is a monotonic clock used for all timing; ``wall_clock`` (seconds since the epoch)
    is only used to report when the next attempt will be admitted. Both are injectable so tests
    can drive time deterministically.
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        timeout_seconds: float = 60,
        half_open_attempts: int = 3,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if timeout_seconds < 0:
            raise ValueError("timeout_seconds must not be negative")
        if half_open_attempts < 1:
            raise ValueError("half_open_attempts must be at least 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.timeout_seconds = float(timeout_seconds)
        self.half_open_attempts = half_open_attempts
        self._clock = clock
        self._wall_clock = wall_clock

        self._state = CircuitState.CLOSED
        # Incremented on every transition; permits from another period are stale.
        self._period = 0
        self._consecutive_failures = 0
        self._total_failures = 0
        self._total_successes = 0
        self._last_failure_reason: str | None = None
        self._opened_at: float | None = None
        self._forced = False
        self._trials_in_flight = 0
        self._trial_successes = 0

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> CircuitState:
        """Current state (OPEN turns into HALF_OPEN here once the timeout has passed)."""
        self._maybe_half_open()
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success while CLOSED (or since the circuit last closed)."""
        return self._consecutive_failures

    @property
    def total_failures(self) -> int:
        """Every failure ever recorded through a permit, including stale ones."""
        return self._total_failures

    @property
    def total_successes(self) -> int:
        """Every success ever recorded through a permit, including stale ones."""
        return self._total_successes

    @property
    def last_failure_reason(self) -> str | None:
        """Reason given with the most recent failure or :meth:`force_open`."""
        return self._last_failure_reason

    @property
    def opened_at(self) -> float | None:
        """Monotonic time the circuit last opened; None while CLOSED."""
        return self._opened_at

    @property
    def half_open_trials_in_flight(self) -> int:
        """Trial calls admitted and not yet finished in the current half-open period."""
        return self._trials_in_flight if self._state is CircuitState.HALF_OPEN else 0

    @property
    def half_open_successes(self) -> int:
        """Successful trial calls in the current half-open period."""
        return self._trial_successes if self._state is CircuitState.HALF_OPEN else 0

    # ------------------------------------------------------------------ admission

    def allow(self) -> bool:
        """Would :meth:`acquire` admit a call right now? Takes no slot."""
        self._maybe_half_open()
        if self._state is CircuitState.CLOSED:
            return True
        if self._state is CircuitState.HALF_OPEN:
            return self._trial_slot_free()
        return False

    def acquire(self) -> Permit | None:
        """Admit one call, or return None when the circuit does not admit it."""
        self._maybe_half_open()
        if self._state is CircuitState.CLOSED:
            return Permit(self, self._period, is_trial=False)
        if self._state is CircuitState.HALF_OPEN and self._trial_slot_free():
            self._trials_in_flight += 1
            return Permit(self, self._period, is_trial=True)
        return None

    def retry_in(self) -> float:
        """Seconds until an OPEN circuit turns HALF_OPEN; 0 when not open."""
        self._maybe_half_open()
        if self._state is not CircuitState.OPEN or self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.timeout_seconds - self._clock())

    def retry_at_wall(self) -> float | None:
        """Epoch seconds at which an OPEN circuit turns HALF_OPEN; None when not open."""
        remaining = self.retry_in()
        if self._state is not CircuitState.OPEN:
            return None
        return self._wall_clock() + remaining

    def open_error(self) -> str:
        """Why calls are not admitted right now, and when the next attempt will be."""
        state = self.state
        remaining = self.retry_in()
        retry_at = datetime.fromtimestamp(self._wall_clock() + remaining, tz=UTC)
        when = f"next attempt at {_format_utc(retry_at)} (in {remaining:.1f}s)"
        if state is CircuitState.HALF_OPEN:
            head = f"backend '{self.name}' circuit is half-open and all trial slots are taken"
        elif self._forced and state is CircuitState.OPEN:
            head = f"backend '{self.name}' circuit was forced open"
        else:
            head = (
                f"backend '{self.name}' circuit is open after "
                f"{self._consecutive_failures} consecutive failures"
            )
        message = f"{head}; {when}"
        if self._last_failure_reason:
            message += f"; last failure: {self._last_failure_reason}"
        return message

    # ------------------------------------------------------------------ control

    def force_open(self, reason: str) -> None:
        """Open the circuit now (e.g. a health probe found the backend dead).

        If it is already OPEN (even one whose timeout has elapsed but has not been observed yet),
        the timeout restarts without a transition. Outstanding permits become stale. The
        reason becomes :attr:`last_failure_reason`; the failure totals are not changed, since
        no call failed.
        """
        self._last_failure_reason = reason
        self._open(forced=True)

    def snapshot(self) -> dict[str, Any]:
        """State and counters for management output."""
        state = self.state
        retry_at = self.retry_at_wall()
        return {
            "name": self.name,
            "state": state.value,
            "consecutive_failures": self._consecutive_failures,
            "total_failures": self._total_failures,
            "total_successes": self._total_successes,
            "failure_threshold": self.failure_threshold,
            "timeout_seconds": self.timeout_seconds,
            "half_open_attempts": self.half_open_attempts,
            "half_open_trials_in_flight": self.half_open_trials_in_flight,
            "half_open_successes": self.half_open_successes,
            "retry_in_seconds": round(self.retry_in(), 3),
            "retry_at": (
                _format_utc(datetime.fromtimestamp(retry_at, tz=UTC))
                if retry_at is not None
                else None
            ),
            "last_failure_reason": self._last_failure_reason,
        }

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(name={self.name!r}, state={self._state.value}, "
            f"consecutive_failures={self._consecutive_failures})"
        )

    # ------------------------------------------------------------------ internals

    def _trial_slot_free(self) -> bool:
        return self._trials_in_flight + self._trial_successes < self.half_open_attempts

    def _is_current(self, permit: Permit) -> bool:
        return permit.period == self._period

    def _record_success(self, permit: Permit) -> None:
        self._total_successes += 1
        if not self._is_current(permit):
            return
        if self._state is CircuitState.CLOSED:
            self._consecutive_failures = 0
        elif self._state is CircuitState.HALF_OPEN and permit.is_trial:
            self._trials_in_flight -= 1
            self._trial_successes += 1
            if self._trial_successes >= self.half_open_attempts:
                self._close()

    def _record_failure(self, permit: Permit, reason: str) -> None:
        self._total_failures += 1
        self._last_failure_reason = reason
        if not self._is_current(permit):
            return
        if self._state is CircuitState.CLOSED:
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.failure_threshold:
                self._open(forced=False)
        elif self._state is CircuitState.HALF_OPEN and permit.is_trial:
            self._trials_in_flight -= 1
            self._consecutive_failures += 1
            self._open(forced=False)

    def _record_release(self, permit: Permit) -> None:
        if self._is_current(permit) and permit.is_trial and self._state is CircuitState.HALF_OPEN:
            self._trials_in_flight -= 1

    def trial_now(self) -> None:
        """End an OPEN period early: the backend is known to be back (a fresh session is up).

        The circuit goes to HALF_OPEN at once, so trial calls decide whether it closes,
        instead of everyone waiting out the rest of ``timeout_seconds``.
        """
        if self._state is CircuitState.OPEN:
            self._transition(CircuitState.HALF_OPEN)

    def _maybe_half_open(self) -> None:
        if (
            self._state is CircuitState.OPEN
            and self._opened_at is not None
            and self._clock() - self._opened_at >= self.timeout_seconds
        ):
            self._transition(CircuitState.HALF_OPEN)

    def _open(self, *, forced: bool) -> None:
        self._opened_at = self._clock()
        self._forced = forced
        if self._state is CircuitState.OPEN:
            # Already open: only the timeout restarts; no transition.
            return
        self._transition(CircuitState.OPEN)

    def _close(self) -> None:
        self._consecutive_failures = 0
        self._opened_at = None
        self._forced = False
        self._transition(CircuitState.CLOSED)

    def _transition(self, new: CircuitState) -> None:
        self._state = new
        self._period += 1
        self._trials_in_flight = 0
        self._trial_successes = 0
