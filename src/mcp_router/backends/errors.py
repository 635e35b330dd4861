"""Errors a routed call can end in, each naming the backend and what happened."""

from __future__ import annotations


class BackendError(Exception):
    """A backend could not answer a request.

    ``reached`` says whether the request may have reached the backend: only calls that surely
    did not (``reached=False``) are safe to retry or fail over for tools that are not idempotent.
    """

    def __init__(self, backend: str, message: str, *, reached: bool) -> None:
        super().__init__(f"backend '{backend}': {message}")
        self.backend = backend
        self.reason = message
        self.reached = reached


class BackendUnavailableError(BackendError):
    """The backend has no live session (down, starting or reconnecting); nothing was sent."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(backend, message, reached=False)


class BackendTimeoutError(BackendError):
    """The backend did not answer within the request timeout."""

    def __init__(self, backend: str, seconds: float) -> None:
        super().__init__(backend, f"no answer within {seconds:g}s (request timeout)", reached=True)
        self.seconds = seconds


class BackendConnectionError(BackendError):
    """The backend's connection failed while the request was in flight."""
