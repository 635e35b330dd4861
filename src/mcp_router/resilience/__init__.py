"""Resilience: circuit breakers and retry policy."""

from mcp_router.resilience.circuit_breaker import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    Permit,
    StateListener,
)
from mcp_router.resilience.retry import RetryPolicy, SleepFn

__all__ = [
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Permit",
    "RetryPolicy",
    "SleepFn",
    "StateListener",
]
