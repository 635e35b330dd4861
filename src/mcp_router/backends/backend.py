"""One backend MCP server: its persistent session, supervision and catalog.

A `Backend` owns exactly one live MCP session at a time, opened by a supervisor task that
runs for the life of the router: it connects, discovers the catalog, serves every call over
that one session, notices when the connection ends (a stdio child that died, an HTTP server
that forgot the session) and reconnects. Calls never open sessions.

Reconnection: a session that had been up for a while and is lost is re-opened at once (a
backend restart should cost one round trip, not a backoff period); failed attempts, and
sessions that die right after opening (a crash loop), back off exponentially with jitter.

HTTP specifics. A request that cannot connect fails alone, as "not reached", and the session is
kept: the server is down, and tearing the session down would only cut the requests in flight
on it. A request that finds its session forgotten (404, or "Session terminated": the server
restarted) surely did not run, so it waits for the supervisor to open the new session and runs
once more there; the caller never sees the restart. A session is torn down when its transport
ends (a stdio child exits, a stream closes) or when the server has forgotten it.

Failures become `BackendError`s that name the backend, say what happened and whether the
request may have reached it (``reached``), which is what the Forwarder's retry and failover
rules need.
"""

from __future__ import annotations

import logging
import random
import signal
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
from mcp_types.version import LATEST_MODERN_VERSION
from pydantic import ValidationError

from mcp_router.backends.capabilities import (
    NO_CAPABILITIES,
    DeclaringClient,
    Owner,
    Profile,
    client_connection,
    declared_by,
    exact,
    shared_roots_refusal,
)
from mcp_router.backends.catalog import BackendCatalog, discover, refresh, union
from mcp_router.backends.eras import (
    LEGACY,
    MODERN,
    ModernRequests,
    legacy_only,
    probe_modern,
    relist_tools,
)
from mcp_router.backends.transports import (
    CONNECTION_LOST,
    INVALID_RESPONSE,
    MESSAGE_TOO_LARGE,
    NOT_REACHED,
    SESSION_EXPIRED,
    BackendTransport,
    TransportLimits,
    create_transport,
    router_error_kind,
)
from mcp_router.call_context import CallRegistry, FrontCall, current_call
from mcp_router.config.models import BackendConfig, RouteRule
from mcp_router.errors import (
    BackendConnectionError,
    BackendError,
    BackendOverCapacityError,
    BackendTimeoutError,
    BackendUnavailableError,
)
from mcp_router.resilience.circuit_breaker import CircuitBreaker

logger = logging.getLogger("mcp_router.backend")

T = TypeVar("T")

_CLIENT_INFO = types.Implementation(name="mcp-router", version="0.1.0")
_RECONNECT_INITIAL = 0.5
_RECONNECT_MAX = 30.0
# A session that lived at least this long and then ended is reconnected without delay.
_STABLE_SESSION_SECONDS = 1.0
# A request's whole attempt is bounded by its timeout plus this: the SDK's clock starts only
# once the request is written, and a backend that stopped reading never lets the write end.
_DEADLINE_GRACE = 0.5
# How often a call served by the main session for want of its profile's session is logged.
_FALLBACK_WARN_EVERY = 60.0
# Attempts a modern channel gets to connect once before the backend counts as legacy-only.
_MODERN_PROBE_ATTEMPTS = 3
# The SDK's listen events (mcp.shared.subscriptions), by class name, as catalog kinds.
_LISTEN_KINDS = {
    "ToolsListChanged": "tools",
    "PromptsListChanged": "prompts",
    "ResourcesListChanged": "resources",
}
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


class _SessionExpiredError(BackendConnectionError):
    """The backend no longer knows our session (it restarted); the request did not run."""

    def __init__(self, backend: str) -> None:
        super().__init__(
            backend, "session expired (backend restarted); reconnecting", reached=False
        )


class Backend:
    """A supervised connection to one configured MCP server."""

    def __init__(
        self,
        config: BackendConfig,
        *,
        request_timeout: float,
        on_catalog_change: CatalogListener | None = None,
        on_notification: NotificationListener | None = None,
        limits: TransportLimits | None = None,
    ) -> None:
        self.config = config
        self.limits = limits or TransportLimits()
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
        self.invalid_messages = 0  # lines/messages from the backend that were not JSON-RPC
        self.last_invalid_message: str | None = None
        self.last_exit_code: int | None = None  # of a stdio child
        self._exit_note: str | None = None  # how the child of the current attempt exited
        self._on_catalog_change = on_catalog_change
        self._on_notification = on_notification
        # The client calls in flight here, to send what the backend raises to the right caller.
        self.calls = CallRegistry(config.name)
        self._per_client: dict[int, Backend] = {}  # session_mode per_client: connection -> own
        self._client_of: Backend | None = None  # set on a per-client session: its parent
        # What this session declares to the server, and the other shared sessions by client
        # capability profile (backends/capabilities.py). The main session declares nothing.
        self.profile: Profile = NO_CAPABILITIES
        self.declares: types.ClientCapabilities = NO_CAPABILITIES.declared()
        self._profiles: dict[Profile, Backend] = {}
        self._fallback_warned_at = -_FALLBACK_WARN_EVERY  # see _warn_profile_fallback
        self._owner: Owner | None = None  # set on a per-client session: its client
        self.instructions: str | None = None  # the server's initialize instructions
        # The era this session speaks (MODERN: the modern channel of its parent), and on the
        # main session what is known of the server's 2026-07-28 support (backends/eras.py):
        # None not probed on this connection yet, True it has a modern channel, False not.
        self.era = LEGACY
        self.speaks_modern: bool | None = None
        self._modern: Backend | None = None
        self._client: Client | None = None
        self._expired: Client | None = None  # a session closed because the server forgot it
        self._reconnect_now = False  # the session was lost in a way that warrants no backoff
        self._failed_attempts = 0  # connection attempts that failed, ever
        self._lost = anyio.Event()
        self._ever_ready = anyio.Event()
        # Set (and replaced) whenever a connection attempt ends: published or failed.
        self._attempt_done = anyio.Event()
        self._first_attempt_done = anyio.Event()  # the first attempt connected or failed
        self._stopping = False
        self._next_attempt_at: float | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._transport: BackendTransport | None = None
        self._offered: tuple[tuple[int, ...], BackendCatalog] | None = None

    # ------------------------------------------------------------------ routing view

    def serves_tool(self, original_name: str) -> bool:
        """Whether one of this backend's sessions lists the tool."""
        return original_name in self.offered.tools

    @property
    def transport(self) -> str:
        """The configured transport: stdio, http or sse."""
        return self.config.transport or "stdio"

    @property
    def healthy(self) -> bool:
        """Connected, and its circuit admits calls."""
        return self.state is BackendState.CONNECTED and self.breaker.allow()

    @property
    def has_session(self) -> bool:
        """A session is open right now."""
        return self._client is not None

    @property
    def in_backoff(self) -> bool:
        """The last connection attempt failed and the next one is scheduled (it is down)."""
        return self._next_attempt_at is not None

    # ------------------------------------------------------------------ life cycle

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Supervise the connection until `stop()`: connect, serve, reconnect."""
        task_status.started()
        delay = _RECONNECT_INITIAL
        try:
            # The transport holds what outlives a session (an HTTP transport's pooled client).
            async with (
                create_transport(self.config, self.limits) as self._transport,
                anyio.create_task_group() as tg,
            ):
                self._tg = tg
                while not self._stopping:
                    published_before = self.connect_count
                    self._exit_note = None
                    self._reconnect_now = False
                    try:
                        await self._connect_and_serve()
                    except Exception as exc:  # any transport or handshake failure: log and retry
                        verdict = legacy_only(exc) if self.era == MODERN else None
                        if verdict is not None:
                            self._legacy_only(str(verdict))
                            break
                        self._failed_attempts += 1
                        if (
                            self.era == MODERN
                            and self.connect_count == 0
                            and (self._failed_attempts >= _MODERN_PROBE_ATTEMPTS)
                        ):
                            # A server that never answers server/discover (waiting for an
                            # initialize that does not come) or keeps failing: the handshake
                            # era serves its clients; no process is started again and again.
                            self._legacy_only(f"no modern session: {_describe(exc)}")
                            break
                        why = _describe(exc)
                        if self._exit_note and self._exit_note not in why:
                            why = f"{self._exit_note} ({why})"  # the child's exit is the cause
                        self.last_error = why
                        logger.warning(
                            "backend '%s' (%s) connection failed: %s",
                            self.name,
                            self.transport,
                            self.last_error,
                        )
                    if self._stopping:
                        break
                    lived = (
                        time.time() - self.connected_at
                        if self.connect_count > published_before and self.connected_at
                        else 0.0
                    )
                    if lived >= _STABLE_SESSION_SECONDS or self._reconnect_now:
                        # A session that worked was lost (restart, crash), or the server said
                        # it restarted (it forgot the session): reconnect at once.
                        delay = _RECONNECT_INITIAL
                        self.state = BackendState.RECONNECTING
                        logger.info("backend '%s': reconnecting now", self.name)
                        continue
                    wait = min(delay, _RECONNECT_MAX) * random.uniform(0.8, 1.2)
                    self.state = BackendState.RECONNECTING
                    self._next_attempt_at = time.time() + wait
                    self._signal_attempt_done()
                    logger.info("backend '%s': next connection attempt in %.1fs", self.name, wait)
                    await anyio.sleep(wait)
                    self._next_attempt_at = None
                    delay = min(delay * 2, _RECONNECT_MAX)
                tg.cancel_scope.cancel()
        finally:
            self.state = BackendState.STOPPED
            self._tg = None
            self._transport = None
            self._signal_attempt_done()

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
            assert self._transport is not None
            if self.era == MODERN:
                await self._serve_modern(ready)
                tg.cancel_scope.cancel()
                return
            client = DeclaringClient(
                self._transport.connect(self),
                declared=self.declares,
                mode="legacy",
                client_info=_CLIENT_INFO,
                message_handler=self._handle_message,
                logging_callback=self._handle_log,
                sampling_callback=self._relay_sampling,
                elicitation_callback=self._relay_elicitation,
                list_roots_callback=self._relay_roots,
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

    async def _serve_modern(self, ready: anyio.Event) -> None:
        """The modern channel's connection: probe the era, learn the tools, serve requests.

        Its catalog stays empty: what the backend offers is listed on the legacy sessions
        (and a 2026-07-28 client is served the catalog of its capability profile). The tools
        are listed only for the SDK's per-tool state (`relist_tools`).
        """
        assert self._transport is not None
        client = DeclaringClient(
            self._transport.connect(self),
            declared=self.declares,
            mode=LATEST_MODERN_VERSION,  # adopted without a probe; `probe_modern` is the probe
            client_info=_CLIENT_INFO,
            message_handler=self._handle_message,
            logging_callback=self._handle_log,
            cache=None,
        )
        async with client:
            discovered = await probe_modern(client.session)
            await relist_tools(client.session)
            ready.set()
            self._publish(client, BackendCatalog())
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._listen_modern, client, discovered)
                    await self._lost.wait()
                    tg.cancel_scope.cancel()
            finally:
                self._unpublish()

    async def _listen_modern(self, client: Client, discovered: types.DiscoverResult) -> None:
        """Hear the list changes of a modern server on its ``subscriptions/listen`` stream.

        A 2026-07-28 server announces list changes only to listeners: a change made by a
        request on this channel (a tool that adds a tool) never reaches the legacy sessions'
        notification streams. Each change re-lists the backend's legacy sessions, as a
        ``list_changed`` on one of them does.
        """
        caps = discovered.capabilities
        wanted = {
            kind: bool(getattr(getattr(caps, kind, None), "list_changed", False))
            for kind in ("tools", "prompts", "resources")
        }
        if not any(wanted.values()):
            return  # the server has no listen handler (the SDK derives the flags from it)
        try:
            async with client.listen(
                tools_list_changed=wanted["tools"],
                prompts_list_changed=wanted["prompts"],
                resources_list_changed=wanted["resources"],
            ) as subscription:
                async for event in subscription:
                    kind = _LISTEN_KINDS.get(type(event).__name__)
                    if kind is not None:
                        self._refresh_family(kind)
        except Exception as exc:  # the channel itself reconnects; only this stream is lost
            logger.info(
                "backend '%s': listen stream of the modern channel ended: %s",
                self.name,
                _describe(exc),
            )

    def _legacy_only(self, reason: str) -> None:
        """This modern channel found the server speaks only the handshake era: stop here."""
        self._stopping = True
        parent = self._client_of
        if parent is not None and parent._modern is self:
            parent.speaks_modern = False
        logger.info("backend '%s' speaks only the handshake era (%s)", self.name, reason)

    def _publish(self, client: Client, catalog: BackendCatalog) -> None:
        self._client = client
        self.catalog = catalog
        self.state = BackendState.CONNECTED
        self.connected_at = time.time()
        self.connect_count += 1
        self.protocol_version = client.protocol_version
        self.server_info = client.server_info
        self.instructions = getattr(client.session.initialize_result, "instructions", None)
        self.last_error = None
        self.breaker.trial_now()  # a fresh session: let trial calls decide, not the clock
        if self.era == MODERN:
            parent = self._client_of
            if parent is not None and parent._modern is self:
                parent.speaks_modern = True
            logger.info(
                "backend '%s' speaks %s too (over %s): 2026-07-28 clients are served in it",
                self.name,
                self.protocol_version,
                self.transport,
            )
            self._ever_ready.set()
            self._signal_attempt_done()
            return
        if self._client_of is None:
            self._new_connection()
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
        self._ever_ready.set()
        self._signal_attempt_done()
        self._notify_catalog()

    def _unpublish(self) -> None:
        self._client = None
        if not self._stopping:
            self.state = BackendState.RECONNECTING
            logger.warning("backend '%s' disconnected: %s", self.name, self.last_error or "closed")

    def _signal_attempt_done(self) -> None:
        # Wake everyone waiting for the outcome of the current attempt; later waiters get a
        # fresh event.
        done, self._attempt_done = self._attempt_done, anyio.Event()
        done.set()
        self._first_attempt_done.set()

    def _notify_catalog(self) -> None:
        if self._on_catalog_change is not None and self._tg is not None:
            self._tg.start_soon(self._on_catalog_change, self)

    def mark_lost(self, reason: str, client: Client | None = None) -> None:
        """Drop the current session (it is broken) so the supervisor reconnects.

        With ``client``, only when that is still the current session: a request that failed
        on a session already replaced must not tear down its successor.
        """
        if client is not None and client is not self._client:
            return
        if self._client is not None and not self._lost.is_set():
            self.last_error = reason  # the first cause noticed is the one worth reporting
        self._lost.set()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the first successful connection, up to ``timeout`` seconds."""
        with anyio.move_on_after(timeout):
            await self._ever_ready.wait()
            return True
        return False

    async def wait_first_attempt(self, timeout: float) -> bool:
        """Wait until the first connection attempt has connected or failed; True if connected.

        Start-up waits on this, so a backend that fails at once (connection refused, a child
        that exits) does not hold the router up until its connect timeout.
        """
        with anyio.move_on_after(timeout):
            await self._first_attempt_done.wait()
        return self._ever_ready.is_set()

    async def stop(self) -> None:
        """Close the session (and stop a stdio child with its process group)."""
        self._stopping = True
        self._lost.set()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # ------------------------------------------------------------------ transport events

    def on_eof(self) -> None:
        """The transport's read stream ended: the connection is gone."""
        if not self._stopping and self._client is not None and self.last_error is None:
            self.last_error = "connection closed by the backend"
        self._lost.set()

    def on_invalid_message(self, detail: str) -> None:
        """The backend wrote something that is not JSON-RPC; keep it for error messages."""
        self.invalid_messages += 1
        self.last_invalid_message = detail
        logger.warning("backend '%s' sent invalid output: %s", self.name, detail)

    def on_message_too_large(self, detail: str, *, fatal: bool) -> None:
        """The backend sent a message over MCP_MAX_MESSAGE_BYTES (dropped, never buffered)."""
        self.invalid_messages += 1
        self.last_invalid_message = detail
        logger.warning("backend '%s' sent %s: dropped", self.name, detail)
        if fatal:
            # Nobody can tell which request it answered: start a clean session.
            self.mark_lost(f"sent {detail}; session restarted")

    def on_process_exit(self, returncode: int | None) -> None:
        """A stdio child exited; remember how, so errors can say it."""
        self.last_exit_code = returncode
        if self._stopping:
            return
        how = _exit_description(returncode)
        self._exit_note = self.last_error = f"process {how}"
        logger.warning("backend '%s': process %s", self.name, how)

    # ------------------------------------------------------------------ notifications

    async def _handle_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            logger.debug("backend '%s' transport error: %s", self.name, message)
            return
        method = getattr(message, "method", None)
        kind = _LIST_CHANGED.get(method or "")
        if kind is not None:
            # One server behind all of a backend's sessions: a server that tells only the
            # session that changed its lists (FastMCP tells the calling session) changed them
            # for the others too, whose catalogs would otherwise keep what is gone.
            self._refresh_family(kind)
        elif self._on_notification is not None:
            await self._on_notification(self, message)

    def _family(self) -> list[Backend]:
        """This backend's sessions: the main one, its profile and per-client sessions."""
        root = self._client_of or self
        return [root, *root._profiles.values(), *root._per_client.values()]

    def _refresh_family(self, kind: str) -> None:
        """Re-list ``kind`` ("tools", "resources", "prompts") on every session of this backend."""
        for member in self._family():
            if member._tg is not None:
                member._tg.start_soon(member._refresh, kind)

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

    async def _current_client(self, wait: float) -> Client:
        client = self._client
        if client is not None and self._lost.is_set():
            client = None  # condemned: the supervisor is closing it; never send on it
        if client is None and wait > 0:
            # A connection attempt may be under way (e.g. re-initializing after the backend
            # restarted): give it a moment rather than failing the call outright, but stop
            # waiting as soon as it fails (the backend is down: fail over now).
            with anyio.move_on_after(wait):
                while (
                    self._client is None
                    and self._next_attempt_at is None
                    and not self._stopping
                    and self.state is not BackendState.STOPPED
                ):
                    await self._attempt_done.wait()
            client = self._client
        if client is None or self._lost.is_set():
            raise BackendUnavailableError(self.name, self.unavailable_reason())
        return client

    async def _next_client(self, old: Client, wait: float) -> Client | None:
        """Wait (bounded) for the supervisor to publish a session other than ``old``."""
        failed_before = self._failed_attempts
        with anyio.move_on_after(wait):
            while not self._stopping:
                client = self._client
                if client is not None and client is not old and not self._lost.is_set():
                    return client
                if self._failed_attempts > failed_before:
                    return None  # the reconnection failed: the backend is down, not restarted
                await self._attempt_done.wait()
        return None

    async def request(
        self,
        op: Callable[[ClientSession], Awaitable[T]],
        *,
        timeout: float | None = None,
        wait_for_session: bool = True,
        count_in_flight: bool = True,
    ) -> T:
        """Run one request on the live session, translating failures into `BackendError`s.

        When the session turns out to be expired (the backend restarted), the request is run
        once more on the new session as soon as the supervisor has opened it.
        ``count_in_flight=False`` keeps health probes out of the load the router balances on
        (client requests go through `relayed`, which counts them and enforces the cap).
        """
        timeout = timeout or self.request_timeout
        wait = min(timeout, self.config.connect_timeout_seconds)
        client = await self._current_client(wait if wait_for_session else 0.0)
        if count_in_flight:
            self.in_flight += 1
        try:
            try:
                return await self._attempt(op, client, timeout)
            except _SessionExpiredError:
                # Re-initializing is a connection phase: bounded like one, not by the call.
                fresh = await self._next_client(client, self.config.connect_timeout_seconds)
                if fresh is None:
                    raise
                logger.info("backend '%s': retrying on the new session", self.name)
                return await self._attempt(op, fresh, timeout)
        finally:
            if count_in_flight:
                self.in_flight -= 1

    async def _attempt(
        self, op: Callable[[ClientSession], Awaitable[T]], client: Client, timeout: float
    ) -> T:
        invalid_before = self.invalid_messages
        try:
            # The whole attempt, however the transport behaves: the SDK's own timeout
            # starts only once the request is written, and the write can block.
            with anyio.fail_after(timeout + _DEADLINE_GRACE):
                return await op(client.session)
        except TimeoutError as exc:
            raise self._timeout_error(timeout, invalid_before) from exc
        except MCPError as exc:
            error = exc.error
            code = error.code
            if code == types.REQUEST_TIMEOUT:
                raise self._timeout_error(timeout, invalid_before) from exc
            kind = router_error_kind(error)
            if kind == MESSAGE_TOO_LARGE:
                # The backend answered, too much: the router's limit refuses it. Its answer,
                # as a JSON-RPC error that names the limit (not retried, no breaker charge).
                raise
            if kind == NOT_REACHED:
                # The HTTP request never connected: the server is down or restarting. The
                # session is kept: tearing it down would cut requests that are in flight on it
                # and say nothing new. When the server is back, the first request on the old
                # session finds it expired, which re-initializes (see below).
                self.last_error = error.message
                raise BackendConnectionError(self.name, error.message, reached=False) from exc
            if kind in (INVALID_RESPONSE, CONNECTION_LOST):
                raise BackendConnectionError(self.name, error.message, reached=True) from exc
            if code == types.CONNECTION_CLOSED:
                if client is self._expired and error.message == "Connection closed":
                    # Still waiting when we closed a session the server had forgotten: it was
                    # sent after the old server instance was gone, so it did not run there.
                    raise _SessionExpiredError(self.name) from exc
                # This request's stream ended without an answer. A transport that died has
                # already told the supervisor (end of its read stream); over HTTP one response
                # stream may end while the session lives on, so nothing is torn down here.
                # Say what is known: how the stream ended and why the session was lost.
                known = {"connection closed", "closed", ""}
                details = [
                    d for d in (error.message, self.last_error) if d and d.lower() not in known
                ]
                detail = f" ({'; '.join(dict.fromkeys(details))})" if details else ""
                raise BackendConnectionError(
                    self.name, f"connection closed during the request{detail}", reached=True
                ) from exc
            if kind == SESSION_EXPIRED or (
                code == types.INVALID_REQUEST and "session terminated" in error.message.lower()
            ):
                self._expired = client
                if client is self._client:
                    self._reconnect_now = True
                self.mark_lost("session expired (backend restarted)", client)
                raise _SessionExpiredError(self.name) from exc
            raise  # the backend answered with a protocol error: that is its answer
        except ValidationError as exc:
            # A well-formed JSON-RPC response whose result does not match the protocol.
            detail = _describe(exc).splitlines()[0]
            raise BackendConnectionError(
                self.name, f"the backend sent an invalid result ({detail})", reached=True
            ) from exc
        except (
            httpx2.TransportError,
            OSError,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
        ) as exc:
            self.mark_lost(_describe(exc), client)
            raise BackendConnectionError(self.name, _describe(exc), reached=False) from exc

    def _timeout_error(self, timeout: float, invalid_before: int) -> BackendTimeoutError:
        error = BackendTimeoutError(self.name, timeout)
        if self.invalid_messages > invalid_before and self.last_invalid_message:
            # The answer may have been mangled: say so, it is the likely cause.
            error.reason += f"; meanwhile it sent invalid output: {self.last_invalid_message}"
            error.args = (f"backend '{self.name}': {error.reason}",)
        return error

    async def relayed(
        self, op: Callable[[ClientSession], Awaitable[T]], *, timeout: float | None = None
    ) -> T:
        """Run a client's request (a call, read, prompt or completion) on this backend.

        The request is registered as in flight for the calling client (`current_call`), so
        what the backend raises meanwhile (logs, sampling, elicitation, roots) reaches that
        client; in ``session_mode: per_client`` it runs on the client's own session. Load is
        counted here, on this backend, whichever session serves it: ``least_in_flight`` and
        ``max_in_flight`` see one backend, however many sessions it has.
        """
        cap = self.config.max_in_flight
        if cap is not None and self.in_flight >= cap:
            # Over the cap: fail at once (no queue hiding overload); not the backend's fault.
            raise BackendOverCapacityError(self.name, cap)
        self.in_flight += 1
        front = current_call.get()
        try:
            target = await self.for_client(front)
            if front is not None:
                target.calls.enter(front)
            if front is not None and target.era == MODERN:
                plain, name = op, self.name
                op = lambda s: plain(ModernRequests(s, front, name))  # noqa: E731
            try:
                return await target.request(op, timeout=timeout, count_in_flight=False)
            finally:
                if front is not None:
                    target.calls.leave(front)
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
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Call one of this backend's tools by its original name (for a 2026-07-28 client on
        the modern channel, the answer may be the backend's ``InputRequiredResult``)."""
        t = timeout or self.request_timeout
        return await self.relayed(
            lambda s: s.call_tool(
                name,
                arguments,
                read_timeout_seconds=t,
                progress_callback=progress_callback,
                meta=meta,  # type: ignore[arg-type]
            ),
            timeout=t,
        )

    async def for_client(self, front: FrontCall | None) -> Backend:
        """The backend session for a client's request: for a 2026-07-28 client the modern
        channel when the backend has one, else `session_for`."""
        if front is None:
            return self
        if front.modern:
            resuming = front.resume is not None and front.resume.backend == self.name
            channel = await self.modern_channel(resuming)
            if channel is not None:
                return channel
            if resuming:
                raise MCPError(
                    types.INVALID_PARAMS,
                    f"requestState is no longer valid: backend '{self.name}', which asked for "
                    "the input, is no longer reachable in the 2026-07-28 era; send the request "
                    "again without it",
                )
        return await self.session_for(client_connection(front), modern=front.modern)

    async def session_for(
        self, connection: Any, *, modern: bool = False, wait: bool = True
    ) -> Backend:
        """The session serving the client of ``connection``: in ``session_mode: per_client``
        the client's own (opened on first use, closed when it leaves, declaring exactly what
        the client declared); otherwise the shared session of the client's capability profile
        (backends/capabilities.py). A session that could not connect falls back to this one.

        ``wait=False`` (lists) opens a missing profile session in the background and answers
        with this one meanwhile: a client's first list must not wait for a server process to
        start (clients time lists out after a few seconds); when the session is up its
        catalog joins the index and clients are told the lists changed.
        """
        if self._client_of is not None or self._tg is None:
            return self
        if self.config.session_mode == "per_client" and connection is not None and not modern:
            return await self._own_session(connection)
        profile = Profile.of(declared_by(connection), modern=modern)
        if profile == self.profile:
            return self
        own = self._profiles.get(profile)
        if own is None:
            own = self._child(profile.declared())
            own.profile = profile
            self._profiles[profile] = own
            await self._start_child(own)
        if wait:
            await own.wait_first_attempt(self.config.connect_timeout_seconds)
            if not own.has_session:
                self._warn_profile_fallback(own)
        return own if own.has_session else self

    def _warn_profile_fallback(self, own: Backend) -> None:
        """Say (once a minute per profile) that a call is served by the main session because
        its profile's session is not connected: the backend then sees a client that declares
        nothing, so it cannot ask that client for sampling or elicitation during the call."""
        now = time.monotonic()
        if now - own._fallback_warned_at < _FALLBACK_WARN_EVERY:
            return
        own._fallback_warned_at = now
        logger.warning(
            "backend '%s': its session for clients declaring %s is not connected (%s); their "
            "calls are served by the main session, which declares no client capabilities, "
            "until it connects (retried in the background)",
            self.name,
            own.profile.label,
            own.last_error or "still connecting",
        )

    def _child(self, declares: types.ClientCapabilities) -> Backend:
        """Another session to the same server (same circuit), declaring ``declares``."""
        own = Backend(
            self.config,
            request_timeout=self.request_timeout,
            on_catalog_change=self._child_catalog_changed,
            on_notification=self._on_notification,
            limits=self.limits,
        )
        own._client_of = self
        own.namespace = self.namespace
        own.declares = declares
        own.breaker = self.breaker  # one backend, one circuit, however many sessions
        return own

    async def _start_child(self, own: Backend) -> None:
        # A task started here inherits the caller's context: without this, the new session's
        # reader would carry the call that happened to open it as its `current_call`, and
        # attribute every later client's sampling/elicitation to that one caller.
        assert self._tg is not None
        token = current_call.set(None)
        try:
            await self._tg.start(own.run)
        finally:
            current_call.reset(token)

    async def _child_catalog_changed(self, _child: Backend) -> None:
        self._notify_catalog()  # what the backend offers is the union of its sessions'

    @property
    def may_speak_modern(self) -> bool:
        """Whether this backend is probed for 2026-07-28 at all (SSE never speaks it)."""
        return self.config.era != "legacy" and self.config.resolved_transport != "sse"

    @property
    def protocol_versions(self) -> list[str]:
        """The protocol versions the router speaks with this backend (one per era)."""
        versions = [self.protocol_version] if self.protocol_version else []
        modern = self._modern
        if modern is not None and self.speaks_modern and modern.protocol_version:
            versions.append(modern.protocol_version)
        return versions

    def _new_connection(self) -> None:
        """The main session (re)connected: what was known of the era is re-learned."""
        modern = self._modern
        if modern is not None and self.speaks_modern is False:
            self._modern, self.speaks_modern = None, None  # probe again: it may have changed
        if self._tg is not None and self.may_speak_modern and self.transport != "stdio":
            # Over HTTP the probe is one POST and the channel holds nothing on the server:
            # learn the era now, so status shows it and 2026-07-28 clients use it at once.
            # (A stdio channel is a second process: it is started for the first such client.)
            self._tg.start_soon(self.modern_channel, False)

    async def modern_channel(self, resuming: bool = False) -> Backend | None:
        """This backend's 2026-07-28 channel if it is up; None when the backend speaks only
        the handshake era, or the channel is down or still being opened.

        The first call opens (and probes) it in the background; only over HTTP does a request
        wait for that probe. Until a stdio channel is up, 2026-07-28 clients are served on the
        legacy session through router rounds, which answer the same. ``resuming``: the
        request continues a round the backend started, so nothing else can serve it; a
        channel that is reconnecting is waited for (by the request).
        """
        if self._client_of is not None or self._tg is None or not self.may_speak_modern:
            return None
        if self.speaks_modern is False:
            return None
        own = self._modern
        if own is None:
            own = self._modern = self._child(self.declares)
            own.era = MODERN
            own._on_catalog_change = None  # it lists nothing the index shows
            await self._start_child(own)  # returns at once: the probe runs in its task
        if not own.has_session and own.connect_count == 0 and self.transport == "http":
            # An HTTP probe is one POST: a request that comes while it runs waits for the
            # verdict rather than run in the other era (a stdio probe starts a process).
            await own.wait_first_attempt(self.config.connect_timeout_seconds)
        if own.has_session:
            return own
        if resuming and own.connect_count > 0 and own.state is not BackendState.STOPPED:
            return own
        return None

    async def _own_session(self, connection: Any) -> Backend:
        assert self._tg is not None
        key = id(connection)
        own = self._per_client.get(key)
        if own is None:
            own = self._child(exact(declared_by(connection)))
            own._owner = Owner(connection)
            self._per_client[key] = own
            await self._start_child(own)
            # The connection unwinds its exit stack when the client goes away.
            connection.exit_stack.callback(self._client_left, key)
        await own.wait_first_attempt(self.config.connect_timeout_seconds)
        return own

    @property
    def session_key(self) -> str:
        """Names this session among the backend's sessions (the main one: the backend name)."""
        return self.name if self._client_of is None else f"{self.name}#{id(self)}"

    def client_session(self, connection: Any) -> Backend | None:
        """The ``per_client`` session of the client of ``connection``, if it has one."""
        return self._per_client.get(id(connection))

    @property
    def offered(self) -> BackendCatalog:
        """What the backend offers over all its sessions (each declares different
        capabilities, and servers list some tools only to some): what the index lists."""
        if not self._profiles and not self._per_client:
            return self.catalog
        others = [*self._profiles.values(), *self._per_client.values()]
        key = (id(self.catalog), *(id(s.catalog) for s in others))
        offered = self._offered
        if offered is None or offered[0] != key:
            offered = self._offered = (key, union(self.catalog, [s.catalog for s in others]))
        return offered[1]

    async def notify_roots_changed(self) -> None:
        """Tell the server the client's roots changed (a session that declared roots only)."""
        client = self._client
        if client is not None and self.declares.roots is not None:
            await client.session.send_notification(types.RootsListChangedNotification())

    def _client_left(self, key: int) -> None:
        own = self._per_client.pop(key, None)
        if own is not None and self._tg is not None:
            self._tg.start_soon(own.stop)
            self._notify_catalog()

    @property
    def capabilities(self) -> types.ServerCapabilities | None:
        """What the backend declared (None while it has no session)."""
        client = self._client
        return client.session.server_capabilities if client is not None else None

    # ------------------------------------------------------------------ server-to-client requests

    # During a call: to the calling client. Outside a call: a per-client session asks its
    # own client; a shared session has no one to ask.

    async def _relay_sampling(self, context: Any, params: types.CreateMessageRequestParams) -> Any:
        call = self.calls.resolve()
        if call is not None:
            return await call.sample(params)
        if self._owner is not None:
            return await self._owner.ask(
                types.CreateMessageRequest(params=params),
                types.ClientCapabilities(sampling=types.SamplingCapability()),
                "sampling",
                self.name,
            )
        return self.calls.unattributed("sampling")

    async def _relay_elicitation(self, context: Any, params: Any) -> Any:
        call = self.calls.resolve()
        if call is not None:
            return await call.elicit(params)
        if self._owner is not None:
            return await self._owner.ask(
                types.ElicitRequest(params=params),
                types.ClientCapabilities(elicitation=types.ElicitationCapability()),
                "elicitation",
                self.name,
            )
        return self.calls.unattributed("elicitation")

    async def _relay_roots(self, context: Any) -> Any:
        call = self.calls.resolve()
        if call is not None:
            return await call.list_roots()
        if self._owner is not None:
            return await self._owner.ask(
                types.ListRootsRequest(),
                types.ClientCapabilities(roots=types.RootsCapability()),
                "roots",
                self.name,
            )
        return shared_roots_refusal(self.name)

    async def ping(self, timeout: float) -> float:
        """Send an MCP ping on the current session; return the round-trip time in ms.

        Does not wait for a session and is not counted as load; raises `BackendError`.
        """
        start = time.perf_counter()
        await self.request(
            lambda s: s.send_request(
                types.PingRequest(), types.EmptyResult, request_read_timeout_seconds=timeout
            ),
            timeout=timeout,
            wait_for_session=False,
            count_in_flight=False,
        )
        return (time.perf_counter() - start) * 1000


def _exit_description(returncode: int | None) -> str:
    if returncode is None:
        return "closed its stdout"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions[0] if exc.exceptions else exc
        return _describe(inner)
    if isinstance(exc, BackendError):
        return exc.reason
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, MCPError) else text
