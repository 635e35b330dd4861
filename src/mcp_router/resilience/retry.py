"""Retry policy for calls on one backend, built on tenacity.

The policy decides nothing about *whether* a failure is retryable: the caller passes a predicate
(``retry_if``), because only the caller knows whether the request surely did not reach the backend
or the tool is idempotent (see DESIGN.md, "Routing semantics").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from mcp_router.config.models import RetryConfig

__all__ = ["RetryPolicy", "SleepFn"]

T = TypeVar("T")

SleepFn = Callable[[float], Awaitable[None]]
"""An async sleep: awaited with the number of seconds to wait between attempts."""

RetryCallback = Callable[[int, BaseException, float], None]
"""``(attempt_number_that_failed, exception, seconds_until_next_attempt)``."""


class RetryPolicy:
    """Exponential backoff with jitter, capped, for at most ``max_attempts`` attempts.

    The wait before retry ``n`` (1-based) is
    ``min(initial_backoff * multiplier ** (n - 1) + uniform(0, jitter), max_backoff)``
    (tenacity's :class:`~tenacity.wait_exponential_jitter`). ``jitter`` defaults to
    ``initial_backoff``. ``max_attempts=1`` means a single attempt and no retry. ``sleep`` replaces
    :func:`asyncio.sleep` (tests inject a recorder so they never really sleep).

    Only exceptions that are :class:`Exception` instances and for which ``retry_if`` returns True
    are retried; cancellation and other ``BaseException``s propagate at once. When the policy gives
    up, the original last exception is re-raised (never :class:`tenacity.RetryError`).
    """

    @classmethod
    def from_config(cls, retry: RetryConfig) -> RetryPolicy:
        """The policy ``routing.retry`` describes (ValueError when it cannot be built)."""
        return cls(
            max_attempts=retry.max_attempts,
            initial_backoff=retry.initial_backoff_seconds,
            multiplier=retry.backoff_multiplier,
            max_backoff=retry.max_backoff_seconds,
        )

    def __init__(
        self,
        max_attempts: int = 3,
        initial_backoff: float = 0.1,
        multiplier: float = 2.0,
        max_backoff: float = 10.0,
        *,
        jitter: float | None = None,
        sleep: SleepFn | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if initial_backoff < 0:
            raise ValueError("initial_backoff must not be negative")
        if multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if max_backoff < 0:
            raise ValueError("max_backoff must not be negative")
        if jitter is not None and jitter < 0:
            raise ValueError("jitter must not be negative")
        self.max_attempts = max_attempts
        self.initial_backoff = float(initial_backoff)
        self.multiplier = float(multiplier)
        self.max_backoff = float(max_backoff)
        self.jitter = float(initial_backoff if jitter is None else jitter)
        self._sleep: SleepFn = sleep if sleep is not None else asyncio.sleep
        self._wait = wait_exponential_jitter(
            multiplier=self.initial_backoff,
            max=self.max_backoff,
            exp_base=self.multiplier,
            jitter=self.jitter,
        )

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, "
            f"initial_backoff={self.initial_backoff}, multiplier={self.multiplier}, "
            f"max_backoff={self.max_backoff})"
        )

    async def run(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        retry_if: Callable[[BaseException], bool],
        on_retry: RetryCallback | None = None,
    ) -> T:
        """Await ``fn()``, retrying failures for which ``retry_if`` is True.

        ``on_retry(attempt, exc, wait_seconds)`` is called before each backoff sleep, with the
        number of the attempt that just failed.
        The first attempt runs without tenacity (nothing to set up on the hot path when it
        succeeds, ~20 us saved per call); only a retryable failure builds the retry loop, which
        replays that first failure as its attempt 1 so waits and callbacks are unchanged.
        """
        try:
            return await fn()
        except Exception as exc:
            if self.max_attempts <= 1 or not retry_if(exc):
                raise
            first_failure: Exception = exc

        def should_retry(exc: BaseException) -> bool:
            return isinstance(exc, Exception) and retry_if(exc)

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is None or state.outcome is None:
                return
            exc = state.outcome.exception()
            if exc is None:
                return
            wait = state.upcoming_sleep
            on_retry(state.attempt_number, exc, wait)

        retrying = AsyncRetrying(
            sleep=self._sleep,
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(should_retry),
            before_sleep=before_sleep,
            reraise=True,
        )

        attempts = 0

        async def attempt() -> T:
            # tenacity awaits only coroutine functions; ``fn`` may be a lambda returning one.
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise first_failure
            return await fn()

        return await retrying(attempt)
