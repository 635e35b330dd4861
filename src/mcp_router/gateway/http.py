"""The HTTP front: streamable HTTP at /mcp or legacy SSE at /sse, plus /health, /ready, /metrics.

Uvicorn serves FastMCP's Starlette app. Layers, outermost first:

1. ``BodyLimit``: bodies over ``MCP_MAX_REQUEST_BYTES`` get 413 before reaching the MCP layer;
2. ``MetricsAuth``: with ``MCP_METRICS_REQUIRE_AUTH=true``, /metrics wants a valid bearer token;
3. FastMCP's Host/Origin guard (strict mode, DNS-rebinding protection): the Host header must
   be localhost, 127.0.0.1, ::1, the address the connection came in on, or one of
   ``MCP_ALLOWED_HOSTS`` (421 otherwise); a browser Origin must be same-origin, loopback, or one
   of ``MCP_ALLOWED_ORIGINS`` (403 otherwise);
4. FastMCP's bearer auth on /mcp and /sse (401 + ``WWW-Authenticate``); /health and /ready are
   always open.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

import uvicorn

from mcp_router.gateway.auth import FrontAuth
from mcp_router.gateway.headers import TrimmedHeaders
from mcp_router.gateway.server import Router

logger = logging.getLogger("mcp_router.http")

ASGIApp = Any
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyLimit:
    """Reject request bodies larger than ``max_bytes`` with 413, declared or streamed.

    A body is read whole (it is at most ``max_bytes``) before the app sees it, so a streamed
    body that turns out too large is refused before any response has started; raising from
    inside the app's ``receive`` instead would let an inner error handler answer 500 first.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
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
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its whole body
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # then the real stream: http.disconnect when it comes

        await self.app(scope, replay, send)

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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class MetricsAuth:
    """Require a valid bearer token on ``/metrics`` (the MCP endpoint's own tokens)."""

    def __init__(self, app: ASGIApp, auth: FrontAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != "/metrics":
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        if await self.auth.verify_header(header) is not None:
            await self.app(scope, receive, send)
            return
        challenge = 'Bearer error="invalid_token"' if header else "Bearer"
        body = b'{"error": "invalid_token", "error_description": "a bearer token is required"}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", challenge.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def build_http_app(router: Router) -> ASGIApp:
    """The ASGI app for the configured front transport (http -> /mcp, sse -> /sse)."""
    settings = router.settings
    guard: dict[str, Any] = {
        # True = strict: validate every request, whatever address the router is bound to.
        "host_origin_protection": True,
        "allowed_hosts": settings.allowed_host_list or None,
        "allowed_origins": settings.allowed_origin_list or None,
    }
    if settings.transport == "sse":
        app = router.server.http_app(transport="sse", path="/sse", **guard)
    else:
        app = router.server.http_app(transport="http", path="/mcp", **guard)
    if settings.metrics_require_auth and router.front_auth is not None:
        app = MetricsAuth(app, router.front_auth)
    return BodyLimit(TrimmedHeaders(app), settings.max_request_bytes)


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
    auth = router.front_auth
    if auth is not None and auth.provider is not None:
        logger.info("%s requires a bearer token: %s", path, auth.describe())
    elif not _is_loopback(settings.host):
        logger.warning(
            "listening on %s without authentication: set MCP_AUTH_TOKENS, MCP_AUTH_TOKEN_FILE "
            "or MCP_JWT_* unless something in front of the router authenticates clients",
            settings.host,
        )
    await server.serve(sockets=sockets)
