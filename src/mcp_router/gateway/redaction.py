"""The last step before the wire: secrets are hidden in every error the router answers with.

Error texts are built from many sources: the forwarder's ``RoutingError`` (every backend tried
and why), a backend's ``last_error``, a breaker's last failure reason, an exception an HTTP
library raised with the backend URL in it. Rather than trusting each of those, the outermost
middleware passes what leaves as an error through :func:`mcp_router.secrets.redact`: tool error
results (``isError``) and the errors of every request (``ToolError``, ``ResourceError``,
``PromptError``, ``NotFoundError``, JSON-RPC ``MCPError``). Successful results are left alone:
they are the backend's answer, passed through verbatim, and the hot path stays untouched.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from fastmcp.exceptions import FastMCPError, NotFoundError, PromptError, ResourceError, ToolError
from fastmcp.server.middleware import Middleware, MiddlewareContext
from mcp.shared.exceptions import MCPError

from mcp_router.secrets import redact, redact_data

__all__ = ["RedactErrors", "redacted_error"]

_KNOWN_BASES: tuple[type[Exception], ...] = (
    ToolError,
    ResourceError,
    PromptError,
    NotFoundError,
    FastMCPError,
)


def redacted_error(exc: Exception) -> Exception | None:
    """A copy of ``exc`` with its message redacted, or None when there is nothing to hide."""
    if isinstance(exc, MCPError):
        message = redact(exc.error.message)
        data = redact_data(exc.error.data)
        if message == exc.error.message and data == exc.error.data:
            return None
        return MCPError(exc.error.code, message, data)
    if isinstance(exc, FastMCPError | NotFoundError):
        text = str(exc)
        shown = redact(text)
        if shown == text:
            return None
        try:
            copy: Exception = type(exc)(shown)
        except TypeError:  # a subclass with its own constructor: its nearest known base
            base = next(b for b in _KNOWN_BASES if isinstance(exc, b))
            copy = base(shown)
        if isinstance(exc, FastMCPError) and isinstance(copy, FastMCPError):
            copy.log_level = exc.log_level
        return copy
    return None


def _redact_result(result: Any) -> Any:
    if not getattr(result, "is_error", False):
        return result
    content = getattr(result, "content", None)
    if not content:
        return result
    changed = False
    shown: list[Any] = []
    for item in content:
        if isinstance(item, types.TextContent):
            text = redact(item.text)
            if text != item.text:
                item = item.model_copy(update={"text": text})
                changed = True
        shown.append(item)
    return result.model_copy(update={"content": shown}) if changed else result


class RedactErrors(Middleware):
    """Outermost middleware: no secret leaves in an error text (see the module docstring)."""

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        """Redact a tool error result, or the error the call raised."""
        try:
            result = await call_next(context)
        except Exception as exc:
            copy = redacted_error(exc)
            if copy is None:
                raise
            raise copy from None  # the original (with the secret) stays out of the chain
        return _redact_result(result)

    async def on_request(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        """Redact the error of any request (resources/read, prompts/get, completions, ...)."""
        try:
            return await call_next(context)
        except Exception as exc:
            copy = redacted_error(exc)
            if copy is None:
                raise
            raise copy from None
