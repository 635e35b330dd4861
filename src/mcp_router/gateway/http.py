"""The HTTP front: streamable HTTP at /mcp or legacy SSE at /sse, plus /health, /ready, /metrics.

Uvicorn serves FastMCP's Starlette app. Layers, outermost first:

0. uvicorn's protocol, with ``HeaderLimits``: request line + headers over
   ``MCP_MAX_HEADER_BYTES`` get 431, headers slower than ``MCP_HEADER_TIMEOUT_SECONDS`` 408,
   before anything else is done;
1. ``BodyLimit``: bodies over ``MCP_MAX_REQUEST_BYTES`` get 413 before reaching the MCP layer;
   ``Authorization: Bearer`` with any run of spaces/tabs is normalised (RFC 7235);
2. ``MetricsAuth``: with ``MCP_METRICS_REQUIRE_AUTH=true``, /metrics wants a valid bearer token;
3. FastMCP's Host/Origin guard (strict mode, DNS-rebinding protection): the Host header must
   be localhost, 127.0.0.1, ::1, the address the connection came in on, or one of
   ``MCP_ALLOWED_HOSTS`` (421 otherwise); a browser Origin must be same-origin, loopback, or one
   of ``MCP_ALLOWED_ORIGINS`` (403 otherwise);
4. FastMCP's bearer auth on /mcp and /sse (401 + ``WWW-Authenticate``); /health and /ready are
   always open;
5. ``SessionLimits``: ``MCP_MAX_SESSIONS_PER_CLIENT`` (429) and ``MCP_MAX_SESSIONS`` (503), new
   sessions refused while draining (503); idle sessions are reaped by the SDK's session
   manager after ``MCP_SESSION_IDLE_SECONDS``.

A request POST is answered with ``application/json`` unless the backend sends something for it
before its result (then ``text/event-stream``): `mcp_router.gateway.json_first`.

On SIGTERM (or Ctrl-C) the server drains first (:class:`FrontServer`): readiness 503, no new
sessions, up to ``MCP_SHUTDOWN_GRACE_SECONDS`` for requests in flight; a second signal stops at
once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from types import FrameType
from typing import Any

import fastmcp
import uvicorn
from starlette.middleware import Middleware as StarletteMiddleware

from mcp_router.asgi import header, replay_body, send_jsonrpc_error
from mcp_router.gateway.auth import FrontAuth, bearer_token
from mcp_router.gateway.front_limits import SessionLimits, bounded_protocol, find_session_endpoint
from mcp_router.gateway.headers import TrimmedHeaders
from mcp_router.gateway.json_first import install as answer_json_first
from mcp_router.gateway.server import Router
from mcp_router.state import SessionFront

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
        if scope["type"] == "http":
            _normalise_bearer(scope)
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
        await self.app(scope, replay_body(b"".join(chunks), receive), send)

    async def _reject(self, send: Any) -> None:
        await send_jsonrpc_error(
            send,
            413,
            f"request body larger than {self.max_bytes} bytes (MCP_MAX_REQUEST_BYTES)",
            -32600,
        )


def _normalise_bearer(scope: dict[str, Any]) -> None:
    """Rewrite ``Bearer<spaces/tabs>tok`` as ``Bearer tok``: the SDK's auth wants one space."""
    headers = scope.get("headers")
    if not headers:
        return
    for i, (name, value) in enumerate(headers):
        if name != b"authorization" or (value[:7] == b"Bearer " and value[7:8] not in b" \t"):
            continue
        token = bearer_token(value.decode("latin-1"))
        if token is not None:
            headers = list(headers)
            headers[i] = (name, b"Bearer " + token.encode("latin-1"))
            scope["headers"] = headers
        return


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
        raw = header(scope, b"authorization")
        authorization = None if raw is None else raw.decode("latin-1")
        if await self.auth.verify_header(authorization) is not None:
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
    sse = settings.transport == "sse"
    path = "/sse" if sse else "/mcp"
    mcp_app: Any = None
    limits = StarletteMiddleware(
        SessionLimits,
        path=path,
        message_path=fastmcp.settings.message_path if sse else None,
        sse=sse,
        max_sessions=settings.max_sessions,
        max_per_client=settings.max_sessions_per_client,
        lifecycle=router.lifecycle,
        locate=lambda: find_session_endpoint(mcp_app, path),
    )
    front = [limits]
    shared = router.shared_sessions
    if shared is not None and not sse:
        # MCP_STATE_URL: a legacy session continues on whichever replica a request reaches
        shared.bind(path=path, locate=lambda: find_session_endpoint(mcp_app, path))
        front.append(StarletteMiddleware(SessionFront, shared=shared, path=path))
    if sse:
        mcp_app = router.server.http_app(transport="sse", path=path, middleware=front, **guard)
    else:
        mcp_app = router.server.http_app(
            transport="http",
            path=path,
            middleware=front,
            session_idle_timeout=settings.session_idle_seconds,
            **guard,
        )
        # Request POSTs answer with JSON until the backend sends something before the result.
        answer_json_first(mcp_app, lambda: find_session_endpoint(mcp_app, path))
    app: ASGIApp = mcp_app
    if settings.metrics_require_auth and router.front_auth is not None:
        app = MetricsAuth(app, router.front_auth)
    return BodyLimit(TrimmedHeaders(app), settings.max_request_bytes)


class FrontServer(uvicorn.Server):
    """uvicorn, announcing the URL once the port is open and draining on the first signal.

    uvicorn stops at once on SIGTERM, and sse-starlette ends every SSE response (so every
    in-flight call) as soon as uvicorn's ``should_exit`` is set. Here the first SIGTERM/SIGINT
    starts a drain instead; ``should_exit`` is set only when nothing is in flight any more or
    the grace period is over. A second signal stops at once (uvicorn's own handling).
    """

    def __init__(self, config: uvicorn.Config, router: Router, path: str) -> None:
        super().__init__(config)
        self.router = router
        self.path = path
        self.url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[Any] | None = None) -> None:
        """Bind (the lifespan no longer waits for discovery), then say where we listen."""
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)
        if not self.started or not self.servers:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}{self.path}"
        logger.info("listening on %s", self.url)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First SIGTERM/SIGINT: drain; any later one, or one before start-up: stop now."""
        loop = self._loop
        if self._drain_task is not None or loop is None or not self.started:
            super().handle_exit(sig, frame)
            return
        name = signal.Signals(sig).name
        loop.call_soon_threadsafe(self._begin_drain, name)

    def _begin_drain(self, signal_name: str) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain(signal_name))

    async def _drain(self, signal_name: str) -> None:
        lifecycle = self.router.lifecycle
        grace = self.router.settings.shutdown_grace_seconds
        lifecycle.begin_drain()
        logger.info(
            "%s: draining (readiness 503, no new sessions); %d request(s) in flight, "
            "up to %g s (MCP_SHUTDOWN_GRACE_SECONDS)",
            signal_name,
            lifecycle.busy,
            grace,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        if await lifecycle.wait_idle(grace):
            # The last answers are written; give clients a moment to read them before their
            # GET streams are cut (a client whose stream breaks may drop what it just got).
            await asyncio.sleep(max(0.0, min(1.0, grace - (loop.time() - started))))
            logger.info("drained: no request in flight; stopping")
        else:
            logger.warning(
                "grace period over with %d request(s) in flight: cancelling them", lifecycle.busy
            )
        self.should_exit = True


async def serve_http(router: Router, *, sockets: list[Any] | None = None) -> None:
    """Run uvicorn with the router's app until cancelled or drained after a signal."""
    settings = router.settings
    guarded = build_http_app(router)
    config = uvicorn.Config(
        guarded,
        host=settings.host,
        port=settings.port,
        http=bounded_protocol(settings.max_header_bytes, settings.header_timeout_seconds),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        lifespan="on",
        log_config=None,
        # After the drain, what is left is open GET streams (closed within 0.5 s) and calls
        # the grace period already gave up on.
        timeout_graceful_shutdown=2,
        ws="none",
    )
    path = "/sse" if settings.transport == "sse" else "/mcp"
    server = FrontServer(config, router, path)
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
