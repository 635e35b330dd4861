"""The routing middleware: the hot path of every routed request.

FastMCP's generic path resolves a component through every provider (a gather per call), wraps
the result in its own result type and converts it back. A routed request needs none of that:
the index already knows the name, and the backend's result is exactly what the client must
get. This middleware answers routed ``tools/call``, ``resources/read`` and ``prompts/get``
itself through the one `CallEntry` and hands the backend's result to the wire unchanged;
every other name (the router's own ``router_*`` tools, unknown names) continues down
FastMCP's normal path. The router's own tools are resolved first: the index never holds a
name that shadows them (see `RESERVED_TOOL_PREFIX` in `backends/manager.py`).
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from fastmcp.server.middleware import Middleware, MiddlewareContext

from mcp_router.backends.manager import BackendManager
from mcp_router.call_context import FrontCall
from mcp_router.gateway.components import prompt_result, resource_result
from mcp_router.gateway.entry import CallEntry


class RoutingMiddleware(Middleware):
    """Routes requests for exposed backend names straight to the `CallEntry`."""

    def __init__(self, entry: CallEntry, manager: BackendManager) -> None:
        self._entry = entry
        self._manager = manager  # the index is read live: it is swapped on change

    async def on_call_tool(
        self, context: MiddlewareContext[types.CallToolRequestParams], call_next: Any
    ) -> Any:
        params = context.message
        if params.name not in self._manager.index.tools and not await self._settled(
            context, params.name
        ):
            return await call_next(context)
        return await self._entry.call_tool(context.fastmcp_context, params.name, params.arguments)

    async def _settled(self, context: MiddlewareContext[Any], name: str) -> bool:
        """An unknown name may belong to a capability profile session still opening for this
        client (lists do not wait for it): wait for those sessions (bounded), then look again."""
        ctx = context.fastmcp_context
        rc = ctx.request_context if ctx is not None else None
        if rc is None:
            return False
        call = FrontCall.from_context(ctx)
        connection = getattr(rc.session, "_connection", None)
        modern = call.modern if call is not None else False
        async with anyio.create_task_group() as tg:
            for backend in list(self._manager.backends.values()):
                tg.start_soon(lambda b=backend: b.session_for(connection, modern=modern))
        if name not in self._manager.index.tools:
            await self._manager.rebuild()  # fold freshly opened sessions' catalogs in
        return name in self._manager.index.tools

    async def on_read_resource(
        self, context: MiddlewareContext[types.ReadResourceRequestParams], call_next: Any
    ) -> Any:
        uri = str(context.message.uri)
        if self._manager.index.resolve_uri(uri) is None:
            return await call_next(context)
        wire = await self._entry.read_resource(context.fastmcp_context, uri)
        return resource_result(wire)

    async def on_get_prompt(
        self, context: MiddlewareContext[types.GetPromptRequestParams], call_next: Any
    ) -> Any:
        params = context.message
        if params.name not in self._manager.index.prompts:
            return await call_next(context)
        wire = await self._entry.get_prompt(context.fastmcp_context, params.name, params.arguments)
        return prompt_result(wire)
