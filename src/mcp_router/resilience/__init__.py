"""Resilience: circuit breakers and retry policy."""

from mcp_router.resilience.circuit_breaker import (
    CircuitBreaker,
    CircuitState,
    Permit,
)
from mcp_router.resilience.retry import RetryPolicy, SleepFn

__all__ = [
    "CircuitBreaker",
    "CircuitState",
    "Permit",
    "RetryPolicy",
    "SleepFn",
]
