"""Limits of the HTTP front that no token is needed to hit: headers, sessions, draining.

- Header size and read time (``MCP_MAX_HEADER_BYTES``, ``MCP_HEADER_TIMEOUT_SECONDS``) are
  enforced in uvicorn's protocol, before the HTTP parser sees a byte past the limit: uvicorn
  itself bounds neither (one 120 MB header froze every other client for 18 s), and no ASGI
  layer can help, since the app is only called once the headers are complete.
- Sessions (``MCP_MAX_SESSIONS``, ``MCP_MAX_SESSIONS_PER_CLIENT``) are counted in an ASGI
  layer inside authentication (so it knows who is asking) and checked against the SDK's
  session manager, which owns the sessions and reaps idle ones (``MCP_SESSION_IDLE_SECONDS``):
  a deleted or reaped session frees its slot at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from fastmcp.server.http import StreamableHTTPASGIApp

from mcp_router.asgi import header, jsonrpc_error_body, send_jsonrpc_error
from mcp_router.gateway.auth import client_identity
from mcp_router.gateway.lifecycle import SHUTTING_DOWN, Lifecycle

logger = logging.getLogger("mcp_router.http")

ASGIApp = Any
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


# ----------------------------------------------------------------------------- headers


class HeaderLimits:
    """Mixin for a uvicorn HTTP protocol: bounded request-line + header bytes and read time.

    Until a request's blank line arrives, incoming bytes are counted (the end of the headers is
    found by scanning for it, so a body in the same packet is not counted) and only handed to
    the parser while within ``max_header_bytes``; past it the client gets 431 and the
    connection is closed. A request whose headers take longer than ``header_timeout`` (from
    its first byte, or from the connection's start) gets 408. Works over uvicorn's httptools
    and h11 protocols alike.
    """

    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    transport: Any
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: Any) -> None:
        """Start counting the first request's headers, and its timer."""
        super().connection_made(transport)  # type: ignore[misc]
        self._header_bytes: int | None = 0  # None: past the headers of the current request
        self._header_tail = b""
        self._header_timer: asyncio.TimerHandle | None = None
        self._start_header_timer()

    def _start_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        """Count header bytes before parsing; refuse a request whose headers are too large."""
        if self._header_bytes is not None:
            if self._header_timer is None:
                self._start_header_timer()
            seen = self._header_tail + data
            # The blank line ending the headers (bare LF too: the parsers are lenient).
            found = ((seen.find(b"\r\n\r\n"), 4), (seen.find(b"\n\n"), 2))
            ends = [i + n for i, n in found if i >= 0]
            if ends:
                self._header_bytes += min(ends) - len(self._header_tail)
            else:
                self._header_bytes += len(data)
                self._header_tail = seen[-3:]
            if self._header_bytes > self.max_header_bytes:
                self._refuse(
                    431,
                    f"request line and headers larger than {self.max_header_bytes} bytes "
                    "(MCP_MAX_HEADER_BYTES)",
                )
                return
            if ends:
                self._header_bytes = None
                self._header_tail = b""
                self._stop_header_timer()
        super().data_received(data)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        """The next request on this keep-alive connection starts its own header count."""
        super().on_response_complete()  # type: ignore[misc]
        self._header_bytes = 0
        self._header_tail = b""
        # No timer until its first byte: uvicorn's keep-alive timeout covers the idle time.
        self._stop_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the header timer with the connection."""
        self._stop_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._header_bytes is not None and not self.transport.is_closing():
            self._refuse(
                408,
                f"request headers not received within {self.header_timeout:g} s "
                "(MCP_HEADER_TIMEOUT_SECONDS)",
            )

    def _refuse(self, status: int, message: str) -> None:
        self._stop_header_timer()
        self._header_bytes = None
        if self.transport.is_closing():
            return
        _log_refusal(status, _peer(self.transport), message)
        body = jsonrpc_error_body(message, -32600)
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body))
        )
        self.transport.write(head + body)
        self.transport.close()


_last_logged: dict[int, float] = {}


def _log_refusal(status: int, peer: str, message: str) -> None:
    # One line per status per 10 s: a client flooding bad requests must not flood the log.
    now = time.monotonic()
    if now - _last_logged.get(status, -60.0) >= 10:
        _last_logged[status] = now
        logger.warning("HTTP %d to %s: %s (logged at most every 10 s)", status, peer, message)


def _peer(transport: Any) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "a client"


def bounded_protocol(max_header_bytes: int, header_timeout: float) -> type[Any]:
    """uvicorn's HTTP protocol (httptools when installed, else h11) with header limits."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools is a dependency; h11 is uvicorn's own fallback
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    return with_header_limits(base, max_header_bytes, header_timeout)


def with_header_limits(base: type[Any], max_header_bytes: int, header_timeout: float) -> type[Any]:
    """``base`` (a uvicorn HTTP protocol class) with :class:`HeaderLimits` mixed in."""
    return type(
        f"Bounded{base.__name__}",
        (HeaderLimits, base),
        {"max_header_bytes": max_header_bytes, "header_timeout": header_timeout},
    )


# ----------------------------------------------------------------------------- sessions


class SessionLimits:
    """Caps sessions per client and in all, refuses new ones while draining, counts requests.

    A new session is a POST to the MCP path without ``Mcp-Session-Id`` (streamable HTTP) or a
    GET of ``/sse`` (legacy SSE, where the open stream is the session). Who a client is comes
    from :func:`client_identity`: its token's identity, else its address.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        message_path: str | None,
        sse: bool,
        max_sessions: int,
        max_per_client: int,
        lifecycle: Lifecycle,
        locate: Callable[[], StreamableHTTPASGIApp | None],
    ) -> None:
        self.app = app
        self.path = path
        self.message_path = message_path
        self.sse = sse
        self.max_sessions = max_sessions
        self.max_per_client = max_per_client
        self.lifecycle = lifecycle
        self.refused = 0
        self._last_warning = -60.0
        self._owned: dict[str, set[str]] = defaultdict(set)  # identity -> session ids
        self._pending: dict[str, int] = defaultdict(int)  # identity -> sessions being opened
        self._sse_open: dict[str, int] = defaultdict(int)  # identity -> open SSE streams
        # The FastMCP endpoint whose SDK session manager owns the sessions; found lazily,
        # since the app it lives in is built around this middleware.
        self._locate = locate
        self._manager_app: StreamableHTTPASGIApp | None = None

    def _live(self) -> dict[str, Any] | None:
        if self._manager_app is None:
            self._manager_app = self._locate()
        manager = self._manager_app.session_manager if self._manager_app else None
        if manager is None:
            return None
        # The SDK's own backstop, with the same number (it answers a bare "503").
        manager.max_sessions = self.max_sessions
        # The SDK's session table (private, but FastMCP's own shutdown reads it too).
        return manager._server_instances

    def open_sessions(self, identity: str | None = None) -> int:
        """Sessions open now, in all or for one identity (pruning ended ones)."""
        if self.sse:
            if identity is None:
                return sum(self._sse_open.values())
            return self._sse_open.get(identity, 0)
        live = self._live()
        if live is None:
            return 0
        if identity is None:
            return len(live)
        owned = self._owned.get(identity)
        if owned is None:
            return 0
        owned.intersection_update(live)
        if not owned:
            del self._owned[identity]
            return 0
        return len(owned)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        method = scope.get("method")
        if path == self.path:
            if self.sse and method == "GET":
                await self._sse_session(scope, receive, send)
                return
            if not self.sse and method == "POST":
                if header(scope, b"mcp-session-id") is None:
                    await self._new_session(scope, receive, send)
                else:
                    await self._counted(scope, receive, send)
                return
        elif method == "POST" and self.message_path and path.startswith(self.message_path):
            await self._counted(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _counted(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._until_answered(scope, receive, send, self.app)

    async def _until_answered(
        self, scope: dict[str, Any], receive: Any, send: Any, app: ASGIApp
    ) -> None:
        """Run ``app``, counting the request in flight until its response is complete.

        The SDK streams a POST's answer from the session's own task, so the app may return
        before the response is complete: the count ends with the response's last body (or
        the client going away), which is what a drain must wait for.
        """
        lifecycle = self.lifecycle
        lifecycle.enter(http=True)
        counted = True
        started = False

        def done() -> None:
            nonlocal counted
            if counted:
                counted = False
                lifecycle.leave(http=True)

        async def watched_send(message: dict[str, Any]) -> None:
            nonlocal started
            try:
                await send(message)
            finally:
                if message["type"] == "http.response.start":
                    started = True
                elif message["type"] == "http.response.body" and not message.get("more_body"):
                    done()

        async def watched_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.disconnect":
                done()
            return message

        try:
            await app(scope, watched_receive, watched_send)
        except BaseException:
            done()
            raise
        if not started:
            done()

    def _refusal(self, identity: str) -> tuple[int, str] | None:
        if self.lifecycle.draining:
            return 503, SHUTTING_DOWN
        mine = self.open_sessions(identity) + self._pending.get(identity, 0)
        if mine >= self.max_per_client:
            return 429, (
                f"mcp-router: too many open sessions for this client ({self.max_per_client}, "
                "MCP_MAX_SESSIONS_PER_CLIENT); close one (DELETE) or reuse it"
            )
        total = self.open_sessions() + sum(self._pending.values())
        if total >= self.max_sessions:
            return 503, (
                f"mcp-router: too many open sessions ({self.max_sessions}, MCP_MAX_SESSIONS); "
                "retry later"
            )
        return None

    async def _new_session(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        identity = client_identity(scope)
        refusal = self._refusal(identity)
        if refusal is not None:
            await self._refuse(send, identity, *refusal)
            return
        self._pending[identity] += 1
        pending = True

        def settle() -> None:
            nonlocal pending
            if pending:
                pending = False
                self._pending[identity] -= 1
                if self._pending[identity] <= 0:
                    del self._pending[identity]

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            async def watch(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    if message["status"] < 400:
                        for name, value in message.get("headers", []):
                            if name.lower() == b"mcp-session-id":
                                self._owned[identity].add(value.decode("latin-1"))
                    # Counted as open (or refused) from here on, not when the app returns:
                    # the client may have its answer, and send its next initialize, before.
                    settle()
                await send(message)

            await self.app(scope, receive, watch)

        try:
            await self._until_answered(scope, receive, send, app)
        finally:
            settle()
            self._prune()

    async def _sse_session(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        identity = client_identity(scope)
        refusal = self._refusal(identity)
        if refusal is not None:
            await self._refuse(send, identity, *refusal)
            return
        self._sse_open[identity] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._sse_open[identity] -= 1
            if self._sse_open[identity] <= 0:
                del self._sse_open[identity]

    def _prune(self) -> None:
        # Identities whose sessions all ended are forgotten, so the table stays bounded by
        # the live sessions rather than by every client ever seen.
        live = self._live()
        if live is None or len(self._owned) <= 2 * len(live) + 64:
            return
        for identity in list(self._owned):
            self._owned[identity].intersection_update(live)
            if not self._owned[identity]:
                del self._owned[identity]

    async def _refuse(self, send: Any, identity: str, status: int, message: str) -> None:
        self.refused += 1
        if not self.lifecycle.draining:
            now = time.monotonic()
            if now - self._last_warning >= 10:  # one line per 10 s, not one per refusal
                self._last_warning = now
                logger.warning("new session refused (%d) for %s: %s", status, identity, message)
        await send_jsonrpc_error(send, status, message, headers=[(b"retry-after", b"1")])


def find_session_endpoint(app: Any, path: str) -> StreamableHTTPASGIApp | None:
    """FastMCP's streamable-HTTP endpoint behind ``path`` (through the auth wrapper)."""
    for route in getattr(app, "routes", []):
        if getattr(route, "path", None) != path:
            continue
        endpoint = getattr(route, "endpoint", None)
        for _ in range(5):  # RequireAuthMiddleware(StreamableHTTPASGIApp(...))
            if isinstance(endpoint, StreamableHTTPASGIApp):
                return endpoint
            endpoint = getattr(endpoint, "app", None)
    return None
