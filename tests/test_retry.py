"""Unit tests for RetryPolicy (sleeps are captured, never performed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from mcp_router.resilience import RetryPolicy


class Transient(Exception):
    """A failure the tests treat as retryable."""


class Fatal(Exception):
    """A failure the tests treat as not retryable."""


class SleepRecorder:
    """Injected sleep: records the requested waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def flaky(
    failures: list[BaseException], result: str = "ok"
) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A coroutine function raising ``failures`` in order, then returning ``result``."""
    calls = [0]

    async def fn() -> str:
        calls[0] += 1
        if failures:
            raise failures.pop(0)
        return result

    return fn, calls


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, Transient)


async def test_success_first_try_does_not_sleep() -> None:
    sleep = SleepRecorder()
    fn, calls = flaky([])
    assert await RetryPolicy(sleep=sleep).run(fn, retry_if=is_transient) == "ok"
    assert calls == [1]
    assert sleep.waits == []


async def test_retries_while_predicate_true_then_succeeds() -> None:
    sleep = SleepRecorder()
    fn, calls = flaky([Transient("a"), Transient("b")])
    policy = RetryPolicy(max_attempts=3, sleep=sleep)
    assert await policy.run(fn, retry_if=is_transient) == "ok"
    assert calls == [3]
    assert len(sleep.waits) == 2


async def test_does_not_retry_when_predicate_false() -> None:
    sleep = SleepRecorder()
    error = Fatal("no")
    fn, calls = flaky([error])
    with pytest.raises(Fatal) as info:
        await RetryPolicy(max_attempts=5, sleep=sleep).run(fn, retry_if=is_transient)
    assert info.value is error
    assert calls == [1]
    assert sleep.waits == []


async def test_predicate_false_mid_way_stops_with_that_exception() -> None:
    sleep = SleepRecorder()
    fatal = Fatal("stop")
    fn, calls = flaky([Transient("t"), fatal, Transient("never")])
    with pytest.raises(Fatal) as info:
        await RetryPolicy(max_attempts=5, sleep=sleep).run(fn, retry_if=is_transient)
    assert info.value is fatal
    assert calls == [2]


async def test_gives_up_after_max_attempts_with_original_exception() -> None:
    sleep = SleepRecorder()
    errors = [Transient("1"), Transient("2"), Transient("3"), Transient("4")]
    last = errors[2]
    fn, calls = flaky(list(errors))
    with pytest.raises(Transient) as info:
        await RetryPolicy(max_attempts=3, sleep=sleep).run(fn, retry_if=is_transient)
    assert info.value is last
    assert calls == [3]
    assert len(sleep.waits) == 2


async def test_backoff_grows_exponentially_and_is_capped() -> None:
    sleep = SleepRecorder()
    fn, _ = flaky([Transient(str(i)) for i in range(6)])
    policy = RetryPolicy(
        max_attempts=7, initial_backoff=0.5, multiplier=2.0, max_backoff=5.0, jitter=0, sleep=sleep
    )
    assert await policy.run(fn, retry_if=is_transient) == "ok"
    assert sleep.waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


async def test_backoff_jitter_stays_within_bounds() -> None:
    sleep = SleepRecorder()
    fn, _ = flaky([Transient(str(i)) for i in range(5)])
    policy = RetryPolicy(
        max_attempts=6, initial_backoff=0.1, multiplier=3.0, max_backoff=1.0, sleep=sleep
    )
    await policy.run(fn, retry_if=is_transient)
    bases = [0.1, 0.3, 0.9, 2.7, 8.1]
    for wait, base in zip(sleep.waits, bases, strict=True):
        assert min(base, 1.0) <= wait <= min(base + 0.1, 1.0)


async def test_max_attempts_one_means_no_retry() -> None:
    sleep = SleepRecorder()
    error = Transient("once")
    fn, calls = flaky([error])
    with pytest.raises(Transient) as info:
        await RetryPolicy(max_attempts=1, sleep=sleep).run(fn, retry_if=is_transient)
    assert info.value is error
    assert calls == [1]
    assert sleep.waits == []


async def test_on_retry_receives_attempt_exception_and_wait() -> None:
    sleep = SleepRecorder()
    errors: list[BaseException] = [Transient("a"), Transient("b")]
    fn, _ = flaky(list(errors))
    seen: list[tuple[int, BaseException, float]] = []
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.2, jitter=0, sleep=sleep)
    await policy.run(fn, retry_if=is_transient, on_retry=lambda *args: seen.append(args))
    assert seen == [(1, errors[0], 0.2), (2, errors[1], 0.4)]
    assert sleep.waits == [0.2, 0.4]


async def test_cancellation_is_never_retried() -> None:
    sleep = SleepRecorder()
    fn, calls = flaky([asyncio.CancelledError()])
    with pytest.raises(asyncio.CancelledError):
        await RetryPolicy(max_attempts=3, sleep=sleep).run(fn, retry_if=lambda exc: True)
    assert calls == [1]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"initial_backoff": -1}, {"multiplier": 0.5}, {"max_backoff": -1}],
)
def test_rejects_invalid_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
