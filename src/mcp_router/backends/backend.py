"""One backend MCP server: its persistent session, supervision and catalog.

A `Backend` owns exactly one live MCP session at a time, opened by a supervisor task that
runs for the life of the router: it connects, discovers the catalog, serves every call over
that one session, notices when the connection ends (a stdio child that died, an HTTP server
that forgot the session) and reconnects with exponential backoff. Calls never open sessions.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.session import ClientSession, IncomingMessage
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from mcp_router.backends.catalog import BackendCatalog, discover, refresh
from mcp_router.backends.errors import (
    BackendConnectionError,
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
)
from mcp_router.backends.transports import make_http_client, open_transport
from mcp_router.config.models import BackendConfig, RouteRule
from mcp_router.resilience.circuit_breaker import CircuitBreaker

logger = logging.getLogger("mcp_router.backend")

T = TypeVar("T")

_CLIENT_INFO = types.Implementation(name="mcp-router", version="0.1.0")
_RECONNECT_INITIAL = 0.5
_RECONNECT_MAX = 30.0
_LIST_CHANGED = {
    "notifications/tools/list_changed": "tools",
    "notifications/resources/list_changed": "resources",
    "notifications/prompts/list_changed": "prompts",
}


class BackendState(StrEnum):
    """Where the backend's connection is in its life."""

    STARTING = "starting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


@dataclass
class ProbeResult:
    """Outcome of the last active health probe."""

    ok: bool
    latency_ms: float | None
    at: float
    error: str | None = None


CatalogListener = Callable[["Backend"], Awaitable[None]]
NotificationListener = Callable[["Backend", Any], Awaitable[None]]


class Backend:
    """A supervised connection to one configured MCP server."""

    def __init__(
        self,
        config: BackendConfig,
        *,
        request_timeout: float,
        on_catalog_change: CatalogListener | None = None,
        on_notification: NotificationListener | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.namespace = config.effective_namespace
        self.priority = config.priority
        self.routes: list[RouteRule] = list(config.routes)
        self.request_timeout = config.timeout_seconds or request_timeout
        cb = config.circuit_breaker
        self.breaker = CircuitBreaker(
            config.name,
            failure_threshold=cb.failure_threshold,
            timeout_seconds=cb.timeout_seconds,
            half_open_attempts=cb.half_open_attempts,
        )
        self.in_flight = 0
        self.state = BackendState.STARTING
        self.catalog = BackendCatalog()
        self.last_error: str | None = None
        self.last_probe: ProbeResult | None = None
        self.connected_at: float | None = None
        self.connect_count = 0
        self.protocol_version: str | None = None
        self.server_info: types.Implementation | None = None
        self._on_catalog_change = on_catalog_change
        self._on_notification = on_notification
        self._client: Client | None = None
        self._lost = anyio.Event()
        self._ever_ready = anyio.Event()
        self._connected = anyio.Event()
        self._stopping = False
        self._next_attempt_at: float | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._http_client: httpx2.AsyncClient | None = None

    # ------------------------------------------------------------------ routing view

    def serves_tool(self, original_name: str) -> bool:
        """Whether this backend's catalog lists the tool."""
        return original_name in self.catalog.tools

    @property
    def transport(self) -> str:
        """The configured transport: stdio, http or sse."""
        return self.config.transport or "stdio"

    @property
    def healthy(self) -> bool:
        """Connected, and its circuit admits calls."""
        return self.state is BackendState.CONNECTED and self.breaker.allow()

    # ------------------------------------------------------------------ life cycle

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Supervise the connection until `stop()`: connect, serve, reconnect with backoff."""
        if self.transport == "http":
            self._http_client = make_http_client(self.config)
        task_status.started()
        delay = _RECONNECT_INITIAL
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                while not self._stopping:
                    started = time.monotonic()
                    try:
                        await self._connect_and_serve()
                    except Exception as exc:  # any transport or handshake failure: log and retry
                        self.last_error = _describe(exc)
                        logger.warning(
                            "backend '%s' (%s) connection failed: %s",
                            self.name,
                            self.transport,
                            self.last_error,
                        )
                    if self._stopping:
                        break
                    if time.monotonic() - started > _RECONNECT_MAX:
                        delay = _RECONNECT_INITIAL  # it was up for a while: start backoff afresh
                    wait = min(delay, _RECONNECT_MAX) * random.uniform(0.8, 1.2)
                    self.state = BackendState.RECONNECTING
                    self._next_attempt_at = time.time() + wait
                    logger.info("backend '%s': next connection attempt in %.1fs", self.name, wait)
                    await anyio.sleep(wait)
                    self._next_attempt_at = None
                    delay = min(delay * 2, _RECONNECT_MAX)
                tg.cancel_scope.cancel()
        finally:
            self.state = BackendState.STOPPED
            self._tg = None
            if self._http_client is not None:
                with anyio.CancelScope(shield=True):
                    await self._http_client.aclose()

    async def _connect_and_serve(self) -> None:
        self._lost = anyio.Event()
        ready = anyio.Event()
        timed_out = False
        timeout = self.config.connect_timeout_seconds
        async with anyio.create_task_group() as tg:

            async def watchdog() -> None:
                nonlocal timed_out
                with anyio.move_on_after(timeout):
                    await ready.wait()
                    return
                timed_out = True
                tg.cancel_scope.cancel()

            tg.start_soon(watchdog)
            client = Client(
                open_transport(self.config, self._http_client, self._mark_eof),
                mode="legacy",
                client_info=_CLIENT_INFO,
                message_handler=self._handle_message,
                logging_callback=self._handle_log,
                cache=None,
            )
            async with client:
                catalog = await discover(client.session)
                ready.set()
                self._publish(client, catalog)
                try:
                    await self._lost.wait()
                finally:
                    self._unpublish()
            tg.cancel_scope.cancel()
        if timed_out:
            raise TimeoutError(f"no answer to initialize/list within {timeout:g}s")

    def _publish(self, client: Client, catalog: BackendCatalog) -> None:
        self._client = client
        self.catalog = catalog
        self.state = BackendState.CONNECTED
        self.connected_at = time.time()
        self.connect_count += 1
        self.protocol_version = client.protocol_version
        self.server_info = client.server_info
        self.last_error = None
        counts = catalog.counts
        logger.info(
            "backend '%s' connected over %s (protocol %s): %d tools, %d resources, "
            "%d templates, %d prompts",
            self.name,
            self.transport,
            self.protocol_version,
            counts["tools"],
            counts["resources"],
            counts["resource_templates"],
            counts["prompts"],
        )
        self._connected.set()
        self._ever_ready.set()
        self._notify_catalog()

    def _unpublish(self) -> None:
        self._client = None
        self._connected = anyio.Event()
        if not self._stopping:
            self.state = BackendState.RECONNECTING
            logger.warning("backend '%s' disconnected: %s", self.name, self.last_error or "closed")

    def _notify_catalog(self) -> None:
        if self._on_catalog_change is not None and self._tg is not None:
            self._tg.start_soon(self._on_catalog_change, self)

    def _mark_eof(self) -> None:
        if not self._stopping and self._client is not None and self.last_error is None:
            self.last_error = "connection closed by the backend"
        self._lost.set()

    def mark_lost(self, reason: str) -> None:
        """Drop the current session (it is broken) so the supervisor reconnects."""
        if self._client is not None:
            self.last_error = reason
        self._lost.set()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the first successful connection, up to ``timeout`` seconds."""
        with anyio.move_on_after(timeout):
            await self._ever_ready.wait()
            return True
        return False

    async def stop(self) -> None:
        """Close the session (and stop a stdio child with its process group)."""
        self._stopping = True
        self._lost.set()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # ------------------------------------------------------------------ notifications

    async def _handle_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            logger.debug("backend '%s' transport error: %s", self.name, message)
            return
        method = getattr(message, "method", None)
        kind = _LIST_CHANGED.get(method or "")
        if kind is not None and self._tg is not None:
            self._tg.start_soon(self._refresh, kind)
        elif self._on_notification is not None:
            await self._on_notification(self, message)

    async def _handle_log(self, params: types.LoggingMessageNotificationParams) -> None:
        logger.info("[%s log %s] %s", self.name, params.level, params.data)
        if self._on_notification is not None:
            await self._on_notification(self, params)

    async def _refresh(self, kind: str) -> None:
        client = self._client
        if client is None:
            return
        try:
            self.catalog = await refresh(client.session, self.catalog, kind)
        except Exception as exc:
            logger.warning(
                "backend '%s': re-listing %s failed: %s", self.name, kind, _describe(exc)
            )
            return
        logger.info("backend '%s': %s changed, re-listed", self.name, kind)
        self._notify_catalog()

    # ------------------------------------------------------------------ requests

    def unavailable_reason(self) -> str:
        """Why the backend has no session right now, and when it will be retried."""
        if self.state is BackendState.STOPPED or self._stopping:
            return "stopped"
        why = self.last_error or "not connected yet"
        if self._next_attempt_at is not None:
            wait = max(0.0, self._next_attempt_at - time.time())
            return f"unavailable ({why}); next connection attempt in {wait:.1f}s"
        return f"unavailable ({why}); connecting now"

    async def _session(self, wait: float) -> ClientSession:
        client = self._client
        if client is None and wait > 0 and self._next_attempt_at is None and not self._stopping:
            # A connection attempt is under way (e.g. re-initializing after the backend
            # restarted): give it a moment rather than failing the call outright.
            with anyio.move_on_after(wait):
                await self._connected.wait()
            client = self._client
        if client is None:
            raise BackendUnavailableError(self.name, self.unavailable_reason())
        return client.session

    async def request(
        self,
        op: Callable[[ClientSession], Awaitable[T]],
        *,
        timeout: float | None = None,
    ) -> T:
        """Run one request on the live session, translating failures into `BackendError`s."""
        timeout = timeout or self.request_timeout
        session = await self._session(wait=min(timeout, self.config.connect_timeout_seconds))
        self.in_flight += 1
        try:
            return await op(session)
        except MCPError as exc:
            code = exc.error.code
            if code == types.REQUEST_TIMEOUT:
                raise BackendTimeoutError(self.name, timeout) from exc
            if code == types.CONNECTION_CLOSED:
                self.mark_lost("connection closed")
                raise BackendConnectionError(
                    self.name, "connection closed during the request", reached=True
                ) from exc
            if code == types.INVALID_REQUEST and "session terminated" in exc.error.message.lower():
                # The backend restarted and no longer knows our session: it did not run this.
                self.mark_lost("session expired (backend restarted)")
                raise BackendConnectionError(
                    self.name, "session expired (backend restarted); reconnecting", reached=False
                ) from exc
            raise  # the backend answered with a protocol error: that is its answer
        except (
            httpx2.TransportError,
            OSError,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
        ) as exc:
            self.mark_lost(_describe(exc))
            raise BackendConnectionError(self.name, _describe(exc), reached=False) from exc
        finally:
            self.in_flight -= 1

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        timeout: float | None = None,
        progress_callback: ProgressFnT | None = None,
        meta: dict[str, Any] | None = None,
    ) -> types.CallToolResult:
        """Call one of this backend's tools by its original name."""
        t = timeout or self.request_timeout
        return await self.request(
            lambda s: s.call_tool(
                name,
                arguments,
                read_timeout_seconds=t,
                progress_callback=progress_callback,
                meta=meta,  # type: ignore[arg-type]
            ),
            timeout=t,
        )

    async def ping(self, timeout: float) -> float:
        """Send an MCP ping; return the round-trip time in milliseconds."""
        start = time.perf_counter()
        with anyio.fail_after(timeout):
            await self.request(lambda s: s.send_ping(), timeout=timeout)
        return (time.perf_counter() - start) * 1000


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions[0] if exc.exceptions else exc
        return _describe(inner)
    if isinstance(exc, BackendError):
        return exc.reason
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, MCPError) else text
