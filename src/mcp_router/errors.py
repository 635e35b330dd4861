"""The router's errors: one hierarchy, and how each reaches a client.

Every failure the router itself produces is a `RouterError`. Failures of a backend are
`BackendError`s: they name the backend, say what happened, and whether the request may have
reached it (``reached``), which is what retry and failover need. Failures of routing (nothing
could serve the request, or the name is unknown) are `RoutingError`s, built by the forwarder
from the backend errors of every candidate it tried.

What is *not* here on purpose: a backend's own JSON-RPC error (an `mcp.shared.exceptions.MCPError`
raised by the SDK session). That is the backend's answer, and it reaches the client unchanged
(code, message and data); the router never wraps it.

How a router error reaches a client (`to_error_data`, used by the call entry): a tool call gets
a result with ``isError`` and the message (the model reads it); every other request gets a
JSON-RPC error whose code says whose mistake it was: -32602 (invalid params) for an unknown or
refused name, -32603 (internal error) for a backend that could not answer. Client mistakes are
logged at INFO without a traceback; see `is_client_mistake`.
"""

from __future__ import annotations

import mcp_types as types


class RouterError(Exception):
    """Something the router could not do; the message says what and why."""


class BackendError(RouterError):
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


class BackendOverCapacityError(BackendError):
    """The router's own concurrency cap for the backend (``max_in_flight``) is reached.

    Nothing was sent, and the backend is not at fault: the breaker is not charged, and the
    call moves on to the next candidate.
    """

    def __init__(self, backend: str, cap: int) -> None:
        super().__init__(
            backend,
            f"at its concurrency cap (max_in_flight={cap}): request rejected, retry shortly",
            reached=False,
        )
        self.cap = cap


class RoutingError(RouterError):
    """No backend could serve the request; the message says which were tried and why."""


class UnknownComponentError(RoutingError):
    """The exposed name or URI is not in the aggregated catalog (a client mistake)."""


class AccessDeniedError(RoutingError):
    """A policy (or a pinned definition awaiting approval) refuses this request; the message
    names the rule, never another identity's."""


def is_client_mistake(exc: BaseException) -> bool:
    """Whether an error is the client's doing (logged at INFO, without a traceback)."""
    return isinstance(exc, UnknownComponentError | AccessDeniedError)


def to_error_data(exc: RouterError) -> types.ErrorData:
    """The JSON-RPC error a client gets for a router error on a non-tool request."""
    code = types.INVALID_PARAMS if is_client_mistake(exc) else types.INTERNAL_ERROR
    return types.ErrorData(code=code, message=f"mcp-router: {exc}")


def to_tool_result(exc: RouterError) -> types.CallToolResult:
    """The tool result a client gets for a router error on ``tools/call`` (``isError``)."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"mcp-router: {exc}")], is_error=True
    )
