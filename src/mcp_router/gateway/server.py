"""Builds the router's FastMCP server: the routed catalog, management tools, HTTP routes."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastmcp import FastMCP
from fastmcp.server.middleware import Middleware, MiddlewareContext
from mcp.server.request_state import RequestStateSecurity
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_router import __version__, secrets, telemetry
from mcp_router.backends.manager import AggregatedIndex, BackendManager
from mcp_router.backends.transports import TransportLimits
from mcp_router.config.models import RouterConfig
from mcp_router.gateway.auth import ClientRateLimiter, FrontAuth
from mcp_router.gateway.discovery import (
    DISCOVERY_INSTRUCTIONS,
    pinned_matcher,
    register_discovery_tools,
)
from mcp_router.gateway.entry import CallEntry
from mcp_router.gateway.instructions import aggregate as aggregate_instructions
from mcp_router.gateway.lifecycle import Lifecycle, LifecycleGate
from mcp_router.gateway.list_cache import ListCachingFastMCP
from mcp_router.gateway.listen import ListenStreams
from mcp_router.gateway.management import register_management_tools
from mcp_router.gateway.metrics import RouterMetrics, UnknownNameMetrics
from mcp_router.gateway.middleware import RoutingMiddleware
from mcp_router.gateway.protocol import CLIENT_LEVEL_KEY, ProtocolRelay
from mcp_router.gateway.provider import RouterProvider
from mcp_router.gateway.redaction import RedactErrors
from mcp_router.gateway.roots import attach_roots_relay
from mcp_router.gateway.rounds import InputRounds
from mcp_router.gateway.status import register_status_routes
from mcp_router.gateway.views import CapabilityViews
from mcp_router.governance import Governance, GovernanceMiddleware, current_identity
from mcp_router.reload import ConfigDiff, ConfigReloader
from mcp_router.resilience.retry import RetryPolicy
from mcp_router.routing.engine import RoutingEngine
from mcp_router.routing.forwarder import Forwarder
from mcp_router.settings import RouterSettings
from mcp_router.state import SharedSessions, StateStore
from mcp_router.state.rate_limit import SharedTokenBucket

logger = logging.getLogger("mcp_router.gateway")

INSTRUCTIONS = (
    "mcp-router: one endpoint in front of several MCP servers. Tools, resources and prompts "
    "of every backend are listed with a namespace prefix (e.g. `db_fetch_user`). The "
    "`router_*` tools report backend health and explain routing decisions."
)


class SessionRegistry(Middleware):
    """Remembers connected clients, to tell them all when the catalog changes.

    FastMCP only notifies the calling client; the router must reach every client. The SDK
    builds a session object per request, so what is remembered is the client's connection
    (weakly: a connection that ends is forgotten with it).
    """

    def __init__(self, coalesce_seconds: float = 0.05) -> None:
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self._coalesce = coalesce_seconds
        self._pending: set[str] = set()
        self._flush: asyncio.Task[None] | None = None
        # Also told of every broadcast: the subscriptions/listen streams (gateway/listen.py).
        self.streams: Callable[[set[str]], Awaitable[None]] | None = None

    async def on_request(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        ctx = context.fastmcp_context
        if ctx is not None and ctx.request_context is not None:
            connection = client_connection(ctx.request_context.session)
            if connection is not None:
                self._sessions.add(connection)
        return await call_next(context)

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, connection: Any) -> None:
        """Remember a connection no request has shown yet (a shared session restored here
        for its GET stream: the stream is where this replica's list_changed goes)."""
        if hasattr(connection, "send_tool_list_changed"):
            self._sessions.add(connection)

    def announce(self, kinds: set[str]) -> None:
        """Tell every client that these lists changed, soon: a burst of changes (a backend
        re-listing several times, a reload touching many backends) becomes one
        notification per list kind."""
        self._pending |= kinds
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._coalesce)
        kinds, self._pending = self._pending, set()
        if kinds:
            await self.broadcast(kinds)

    async def broadcast(self, kinds: set[str]) -> None:
        """Send ``notifications/{kind}/list_changed`` to every live session (and listen
        stream)."""
        if self.streams is not None:
            await self.streams(kinds)
        for session in list(self._sessions):
            try:
                if "tools" in kinds:
                    await session.send_tool_list_changed()
                if "resources" in kinds:
                    await session.send_resource_list_changed()
                if "prompts" in kinds:
                    await session.send_prompt_list_changed()
            except Exception as exc:  # a client that went away: forget it
                logger.debug("list_changed to a closed session dropped: %s", exc)
                self._sessions.discard(session)


def client_connection(session: Any) -> Any:
    """The long-lived connection behind a per-request server session (None if it has none)."""
    connection = getattr(session, "_connection", None)
    if connection is not None and hasattr(connection, "send_tool_list_changed"):
        return connection
    return None


@dataclass
class Router:
    """The running router: backends, routing, forwarding and the FastMCP server in front."""

    config: RouterConfig
    settings: RouterSettings
    manager: BackendManager
    engine: RoutingEngine
    forwarder: Forwarder
    server: FastMCP
    sessions: SessionRegistry
    metrics: RouterMetrics
    front_auth: FrontAuth | None = None
    limiter: ClientRateLimiter | None = None
    reloader: ConfigReloader | None = None
    governance: Governance | None = None
    # MCP_STATE_URL set: the replica set's Redis, and the legacy sessions shared through it
    state: StateStore | None = None
    shared_sessions: SharedSessions | None = None
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    _task: asyncio.Task[None] | None = None
    _stop: anyio.Event = field(default_factory=anyio.Event)
    _users: int = 0

    def __post_init__(self) -> None:
        # A request that arrives before discovery ends waits for it, up to the longest time
        # discovery can take (every backend's connect timeout runs concurrently), plus slack.
        timeouts = [b.config.connect_timeout_seconds for b in self.manager.backends.values()]
        self.lifecycle.discovery_wait_seconds = max(timeouts, default=0) + 10
        self.server.middleware.insert(0, LifecycleGate(self.lifecycle))

    @property
    def ready(self) -> anyio.Event:
        """Set once the first discovery is done (whatever it found)."""
        return self.lifecycle.discovered

    async def start(self, *, wait: bool = True) -> None:
        """Start every backend; idempotent, reference-counted.

        With ``wait`` it returns once discovery is done (bounded); without, at once (the
        front serves meanwhile: :class:`LifecycleGate` holds catalog requests until then).
        The backends' supervisors live in a task of their own, so the server may enter and
        leave its lifespan from different tasks (as FastMCP's stdio runner does).
        """
        self._users += 1
        if self._task is None:
            self._stop = anyio.Event()
            self._task = asyncio.create_task(self._supervise(), name="mcp-router-backends")
        if wait:
            await self.ready.wait()

    async def _supervise(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                await self.manager.start(tg)
                # Everything built so far (modules, schemas, the catalog) lives as long as the
                # process: move it out of the collector's sight, so the full collections that
                # per-call garbage triggers do not walk it again and again (p99 spikes).
                gc.collect()
                gc.freeze()
                # Requests allocate many short-lived objects that reference counting frees;
                # collect the young generation less often (measured: GC took ~20% of the
                # CPU of a 2,000-tool tools/list with the default threshold of 700), but not
                # so rarely that one collection becomes a long pause (20,000: ~11 ms).
                gc.set_threshold(5_000, 20, 20)
                self.ready.set()
                # Config hot reload (file polling + SIGHUP) lives as long as the backends.
                self.reloader = ConfigReloader(self)
                reload_scope = anyio.CancelScope()

                async def watch_config(reloader: ConfigReloader = self.reloader) -> None:
                    with reload_scope:
                        await reloader.run()

                tg.start_soon(watch_config)
                # Active health probes (ping + optional GET) follow manager.backends as it
                # changes; they stop before the backends so no probe races a closing session.
                from mcp_router.backends.health import HealthChecker

                health = HealthChecker(lambda: self.manager.backends.values())
                tg.start_soon(health.run)
                state_scope = anyio.CancelScope()
                if self.shared_sessions is not None:

                    async def share_sessions(shared: SharedSessions = self.shared_sessions) -> None:
                        with state_scope:
                            await shared.run()

                    tg.start_soon(share_sessions)
                if self.governance is not None:  # pin approvals, policy reloads
                    tg.start_soon(self.governance.run)
                await self._stop.wait()
                reload_scope.cancel()
                state_scope.cancel()
                health.stop()
                if self.governance is not None:
                    self.governance.stop()
                await self.manager.stop()
        finally:
            self.ready.set()  # never leave a starter waiting, even if start-up failed

    # ------------------------------------------------------------------ config reload

    async def apply_config(self, new: RouterConfig, diff: ConfigDiff) -> None:
        """Hand every object its part of a new configuration (the reloader computed ``diff``);
        connected clients are told once, when the index is rebuilt."""
        # Secrets of the new config are hidden in every output before anything logs about it.
        secrets.install(self.manager, new, self.settings)
        manager, routing, old = self.manager, new.routing, self.config.routing
        retired = await manager.apply_config(new, diff.added, diff.removed, diff.changed)
        if routing.model_dump() != old.model_dump():
            self.forwarder.retry = RetryPolicy.from_config(routing.retry)
            if self.limiter is not None:
                self.limiter.configure_from(self.settings, new)
            if (old.tool_discovery, old.pinned_tools) != (
                routing.tool_discovery,
                routing.pinned_tools,
            ):
                logger.warning(
                    "routing.tool_discovery / pinned_tools changed: takes effect after a restart"
                )
        self.engine.reconfigure(
            list(manager.backends.values()),
            default_strategy=routing.default_strategy,
            load_balancing=routing.load_balancing,
        )
        self.config = new
        await manager.rebuild()
        for backend in retired:
            await backend.stop()

    def reload_token_file(self) -> None:
        """Re-read the bearer-token file if it changed (token rotation)."""
        if self.front_auth is not None and self.front_auth.reload_token_file():
            secrets.install(self.manager, self.config, self.settings)  # the new tokens too

    def count_reload(self, outcome: str) -> None:
        """Count a config reload by outcome (Prometheus)."""
        self.metrics.reloads.labels(outcome).inc()

    async def stop(self, *, force: bool = False) -> None:
        """Stop the backends (children and their process groups included) once unused.

        ``force`` stops them whoever still uses them (the process is about to exit).
        """
        self._users = 0 if force else self._users - 1
        if self._users > 0 or self._task is None:
            return
        task, self._task = self._task, None
        self._stop.set()
        await task
        self.lifecycle.reset()
        if self.limiter is not None:
            await self.limiter.aclose()
        await anyio.to_thread.run_sync(telemetry.flush_tracing)  # last spans out before exit


def build_router(config: RouterConfig, settings: RouterSettings) -> Router:
    """Wire the router together; backends start in the server's lifespan."""
    routing = config.routing
    manager = BackendManager(config, TransportLimits.from_settings(settings))
    engine = RoutingEngine(
        list(manager.backends.values()),
        default_strategy=routing.default_strategy,
        load_balancing=routing.load_balancing,
    )
    retry = RetryPolicy.from_config(routing.retry)
    forwarder = Forwarder(manager, engine, retry)
    entry = CallEntry(forwarder, InputRounds(timeout=routing.input_timeout_seconds))
    sessions = SessionRegistry()
    metrics = RouterMetrics(manager)
    forwarder.observers.append(metrics.observe)
    groups_claim = settings.jwt_groups_claim
    forwarder.observers.append(
        telemetry.call_logger(settings.log_format, lambda: current_identity(groups_claim).name)
    )
    if telemetry.setup_tracing(settings):
        forwarder.observers.append(telemetry.record_span)

    @asynccontextmanager
    async def lifespan(_server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        # HTTP: the port serves at once (/ready says when discovery is done). stdio: the client
        # started the router and waits for initialize under its connect timeout, while its
        # first tools/list often has a much shorter one (Claude Code): answer initialize only
        # once discovery is done, so the list is immediate.
        await router.start(wait=settings.transport == "stdio")
        try:
            yield {}
        finally:
            await router.stop()

    # Secrets are known (and hidden in every output) before anything logs about the config.
    secrets.install(manager, config, settings)
    front_auth = FrontAuth(settings)
    # With a state URL the replicas share one store (sessions, rounds, answers) and one rate
    # bucket per client, both on the store's connection pool; else all stays in this process.
    state = StateStore.from_settings(settings)
    shared = SharedTokenBucket(state.client, url=settings.state_url) if state else None
    limiter = ClientRateLimiter(on_reject=metrics.rate_limited.inc, shared=shared)
    limiter.configure_from(settings, config)
    search_mode = routing.tool_discovery == "search"
    listed = pinned_matcher(routing.pinned_tools) if search_mode else None
    own_instructions = INSTRUCTIONS + (DISCOVERY_INSTRUCTIONS if search_mode else "")
    # Lists reuse their wire form while what a client may see is unchanged (list_cache.py).
    server = ListCachingFastMCP(
        name="mcp-router",
        auth=front_auth.provider,
        instructions=own_instructions,
        version=__version__,
        providers=[RouterProvider(manager, entry, listed=listed)],
        # RedactErrors first (outermost): it sees every error on its way to the client.
        middleware=[
            RedactErrors(),
            sessions,
            limiter,
            UnknownNameMetrics(metrics),
            CapabilityViews(manager),  # each client lists what its backend sessions offer
            RoutingMiddleware(entry, manager),
        ],
        lifespan=lifespan,
        dereference_schemas=False,  # pass backend schemas through verbatim ($ref, $defs)
        list_page_size=routing.list_page_size,
        on_duplicate="warn",
        request_state_security=RequestStateSecurity(keys=[settings.state_key])
        if settings.state_key
        else None,
    )
    router = Router(config, settings, manager, engine, forwarder, server, sessions, metrics)
    router.front_auth, router.limiter = front_auth, limiter
    router.state = state
    if router.state is not None and settings.transport == "http":
        # Legacy sessions follow the client to any replica; the log level a client set
        # follows it too (FastMCP keeps it in the connection's state).
        shared = router.shared_sessions = SharedSessions(
            router.state,
            idle_seconds=settings.session_idle_seconds,
            shared_keys=(CLIENT_LEVEL_KEY,),
            on_connection=sessions.add,
        )
        server._mcp_server.middleware.append(shared.server_middleware)
    # Governance (policies, audit, pinning): every hook is one callable; see governance/core.py.
    governance = router.governance = Governance(
        settings, lambda: router.config, registry=metrics.registry
    )
    forwarder.admission = governance.admit
    forwarder.observers.append(governance.observe)
    manager.catalog_guard = governance.guard_catalog
    governance.notify = sessions.broadcast
    server.add_middleware(GovernanceMiddleware(governance))
    register_management_tools(server, manager, forwarder, settings.replica_id)
    if search_mode:
        register_discovery_tools(server, manager, entry, governance.visible)
    _register_http_routes(router)
    register_status_routes(router)
    relay = ProtocolRelay(manager, engine, entry)
    relay.check = governance.check
    if router.shared_sessions is not None:  # an unsubscribe may land on another replica
        relay.remote_unsubscribe = router.shared_sessions.broadcast_unsubscribe
        router.shared_sessions.on_remote_unsubscribe = relay.drop_subscription
    relay.attach(server)
    listen = ListenStreams(manager, relay)
    listen.attach(server)
    sessions.streams = listen.publish_lists
    manager.add_message_listener(relay.on_backend_message)
    manager.add_backend_listener(relay.resubscribe)
    attach_roots_relay(server, manager)

    async def on_backend_connected(_backend: Any) -> None:
        # backend instructions join the router's own (gateway/instructions.py)
        server.instructions = aggregate_instructions(
            own_instructions, manager.backends.values(), routing.namespace_separator
        )

    manager.add_backend_listener(on_backend_connected)

    async def on_index_change(_index: AggregatedIndex, kinds: set[str]) -> None:
        if kinds:
            sessions.announce(kinds)

    manager.add_listener(on_index_change)
    return router


def _register_http_routes(router: Router) -> None:
    server, manager = router.server, router.manager

    @server.custom_route("/health", methods=["GET"], include_in_schema=False)
    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    @server.custom_route("/ready", methods=["GET"], include_in_schema=False)
    async def ready(_request: Request) -> Response:
        # 503 until discovery is done and a backend is connected, and again while draining;
        # the body says why, so an operator does not have to read the logs.
        is_ready, body = router.lifecycle.readiness(manager, router.state)
        return JSONResponse(body, status_code=200 if is_ready else 503)

    @server.custom_route("/metrics", methods=["GET"], include_in_schema=False)
    async def metrics(_request: Request) -> Response:
        body, content_type = router.metrics.render()
        return Response(body, media_type=content_type)
