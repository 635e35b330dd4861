"""The routing middleware: the hot path of every routed ``tools/call``.

FastMCP's generic path resolves a tool through every provider (a gather per call), wraps the
result in a `ToolResult` and converts it back. A routed call needs none of that: the index
already knows the name, and the backend's `CallToolResult` is exactly what the client must get.
This middleware answers routed names itself and hands the backend's result to the wire
unchanged (FastMCP passes non-`ToolResult` results through); every other name (the ``router_*``
tools, unknown names) continues down FastMCP's normal path.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from fastmcp.server.middleware import Middleware, MiddlewareContext

from mcp_router.gateway.relay import FrontCall, current_call
from mcp_router.routing.forwarder import Forwarder, RoutingError


class RoutingMiddleware(Middleware):
    """Routes calls to exposed backend tools straight to the `Forwarder`."""

    def __init__(self, forwarder: Forwarder) -> None:
        self._forwarder = forwarder
        self._manager = forwarder.manager  # the index is read live: it is swapped on change

    async def on_call_tool(
        self, context: MiddlewareContext[types.CallToolRequestParams], call_next: Any
    ) -> Any:
        params = context.message
        name = params.name
        if name not in self._manager.index.tools:
            return await call_next(context)
        call = FrontCall.from_context(context.fastmcp_context)
        token = current_call.set(call)
        try:
            return await self._forwarder.call_tool(
                name,
                params.arguments,
                progress_callback=call.progress
                if call and call.progress_token is not None
                else None,
            )
        except RoutingError as exc:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=f"mcp-router: {exc}")],
                is_error=True,
            )
        finally:
            current_call.reset(token)
