"""Request header values as RFC 9110 defines them: without surrounding whitespace.

A field value's leading and trailing whitespace (OWS) is not part of the value (RFC 9110
section 5.5). h11 strips it; httptools (uvicorn's faster parser) keeps trailing whitespace,
and the SDK compares ``Mcp-Name`` / ``Mcp-Method`` / ``MCP-Protocol-Version`` with the body
byte for byte, so ``Mcp-Name: tool `` was rejected with -32020 (header mismatch). This ASGI
wrapper trims the MCP headers before anything reads them.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp

_TRIMMED = frozenset({b"mcp-name", b"mcp-method", b"mcp-protocol-version", b"mcp-session-id"})
_OWS = b" \t"
_EDGES = (b" ", b"\t")


class TrimmedHeaders:
    """Strips surrounding spaces and tabs from the MCP request headers' values."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers") or ()
            if any(
                (name in _TRIMMED and value[:1] in (b" ", b"\t")) or value[-1:] in (b" ", b"\t")
                for name, value in headers
            ):
                scope = dict(scope)
                scope["headers"] = [
                    (name, value.strip(_OWS) if name in _TRIMMED else value)
                    for name, value in headers
                ]
        await self.app(scope, receive, send)
