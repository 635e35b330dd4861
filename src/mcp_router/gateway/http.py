"""The HTTP front: streamable HTTP at /mcp or legacy SSE at /sse, plus /health, /ready, /metrics.

Uvicorn serves FastMCP's Starlette app; a small ASGI guard in front enforces the request
body limit (413) before any body reaches the MCP layer.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import uvicorn

from mcp_router.gateway.server import Router

logger = logging.getLogger("mcp_router.http")

ASGIApp = Any


class BodyLimit:
    """Reject request bodies larger than ``max_bytes`` with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
        received = 0
        too_large = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        response_started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not response_started:
                await self._reject(send)

    async def _reject(self, send: Any) -> None:
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": None,
                "error": {
                    "code": -32600,
                    "message": f"request body larger than {self.max_bytes} bytes "
                    "(MCP_MAX_REQUEST_BYTES)",
                },
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def build_http_app(router: Router) -> ASGIApp:
    """The ASGI app for the configured front transport (http -> /mcp, sse -> /sse)."""
    settings = router.settings
    if settings.transport == "sse":
        app = router.server.http_app(transport="sse", path="/sse")
    else:
        app = router.server.http_app(transport="http", path="/mcp")
    return BodyLimit(app, settings.max_request_bytes)


async def serve_http(router: Router, *, sockets: list[Any] | None = None) -> None:
    """Run uvicorn with the router's app until cancelled."""
    settings = router.settings
    guarded = build_http_app(router)
    config = uvicorn.Config(
        guarded,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        timeout_graceful_shutdown=2,
        ws="none",
    )
    server = uvicorn.Server(config)
    path = "/sse" if settings.transport == "sse" else "/mcp"
    logger.info("listening on http://%s:%d%s", settings.host, settings.port, path)
    await server.serve(sockets=sockets)
