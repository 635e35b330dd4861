"""Builds the router's FastMCP server: the routed catalog, management tools, HTTP routes."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastmcp import FastMCP
from fastmcp.server.middleware import Middleware, MiddlewareContext
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_router import __version__
from mcp_router.backends.manager import AggregatedIndex, BackendManager
from mcp_router.config.models import RouterConfig
from mcp_router.gateway.management import register_management_tools
from mcp_router.gateway.metrics import RouterMetrics
from mcp_router.gateway.provider import RouterProvider
from mcp_router.resilience.retry import RetryPolicy
from mcp_router.routing.engine import RoutingEngine
from mcp_router.routing.forwarder import Forwarder
from mcp_router.settings import RouterSettings

logger = logging.getLogger("mcp_router.gateway")

INSTRUCTIONS = (
    "mcp-router: one endpoint in front of several MCP servers. Tools, resources and prompts "
    "of every backend are listed with a namespace prefix (e.g. `db_fetch_user`). The "
    "`router_*` tools report backend health and explain routing decisions."
)


class SessionRegistry(Middleware):
    """Remembers connected client sessions, to tell them when the catalog changes.

    FastMCP only notifies the calling client; the router must reach every client.
    """

    def __init__(self) -> None:
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()

    async def on_request(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        ctx = context.fastmcp_context
        if ctx is not None and ctx.request_context is not None:
            session = ctx.request_context.session
            if session is not None and hasattr(session, "send_tool_list_changed"):
                self._sessions.add(session)
        return await call_next(context)

    def __len__(self) -> int:
        return len(self._sessions)

    async def broadcast(self, kinds: set[str]) -> None:
        """Send ``notifications/{kind}/list_changed`` to every live session."""
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
    ready: anyio.Event = field(default_factory=anyio.Event)
    _task: asyncio.Task[None] | None = None
    _stop: anyio.Event = field(default_factory=anyio.Event)
    _users: int = 0

    async def start(self) -> None:
        """Start every backend and wait for discovery (bounded); idempotent, reference-counted.

        The backends' supervisors live in a task of their own, so the server may enter and
        leave its lifespan from different tasks (as FastMCP's stdio runner does).
        """
        self._users += 1
        if self._task is not None:
            await self.ready.wait()
            return
        self._stop = anyio.Event()
        self._task = asyncio.create_task(self._supervise(), name="mcp-router-backends")
        await self.ready.wait()

    async def _supervise(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                await self.manager.start(tg)
                self.ready.set()
                await self._stop.wait()
                await self.manager.stop()
        finally:
            self.ready.set()  # never leave a starter waiting, even if start-up failed

    async def stop(self) -> None:
        """Stop the backends (children and their process groups included) once unused."""
        self._users -= 1
        if self._users > 0 or self._task is None:
            return
        task, self._task = self._task, None
        self._stop.set()
        await task
        self.ready = anyio.Event()


def build_router(config: RouterConfig, settings: RouterSettings) -> Router:
    """Wire the router together; backends start in the server's lifespan."""
    routing = config.routing
    manager = BackendManager(config)
    engine = RoutingEngine(
        list(manager.backends.values()),
        default_strategy=routing.default_strategy,
        load_balancing=routing.load_balancing,
    )
    retry = RetryPolicy(
        max_attempts=routing.retry.max_attempts,
        initial_backoff=routing.retry.initial_backoff_seconds,
        multiplier=routing.retry.backoff_multiplier,
        max_backoff=routing.retry.max_backoff_seconds,
    )
    forwarder = Forwarder(manager, engine, retry)
    sessions = SessionRegistry()
    metrics = RouterMetrics(manager)
    forwarder.observers.append(metrics.observe)

    @asynccontextmanager
    async def lifespan(_server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        await router.start()
        try:
            yield {}
        finally:
            await router.stop()

    auth = None
    if settings.auth_token_list:
        from fastmcp.server.auth.providers.jwt import StaticTokenVerifier

        auth = StaticTokenVerifier(
            tokens={
                t: {"client_id": f"token-{i}", "scopes": []}
                for i, t in enumerate(settings.auth_token_list)
            }
        )
    server = FastMCP(
        name="mcp-router",
        auth=auth,
        instructions=INSTRUCTIONS,
        version=__version__,
        providers=[RouterProvider(manager, forwarder)],
        middleware=[sessions],
        lifespan=lifespan,
        dereference_schemas=False,  # pass backend schemas through verbatim ($ref, $defs)
        on_duplicate="warn",
    )
    router = Router(config, settings, manager, engine, forwarder, server, sessions, metrics)
    register_management_tools(server, manager, forwarder)
    _register_http_routes(router)

    async def on_index_change(_index: AggregatedIndex, kinds: set[str]) -> None:
        if kinds:
            await sessions.broadcast(kinds)

    manager.add_listener(on_index_change)
    return router


def _register_http_routes(router: Router) -> None:
    server, manager = router.server, router.manager

    @server.custom_route("/health", methods=["GET"], include_in_schema=False)
    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    @server.custom_route("/ready", methods=["GET"], include_in_schema=False)
    async def ready(_request: Request) -> Response:
        backends = list(manager.backends.values())
        connected = sum(1 for b in backends if b.state.value == "connected")
        body = {
            "ready": router.ready.is_set(),
            "backends": len(backends),
            "connected": connected,
            "tools": len(manager.index.tools),
        }
        return JSONResponse(body, status_code=200 if router.ready.is_set() else 503)

    @server.custom_route("/metrics", methods=["GET"], include_in_schema=False)
    async def metrics(_request: Request) -> Response:
        body, content_type = router.metrics.render()
        return Response(body, media_type=content_type)
