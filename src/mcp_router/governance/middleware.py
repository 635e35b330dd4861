"""The FastMCP middleware that filters every list per identity and guards ``router_*`` tools.

Routed requests (backend tools, resources, prompts) are checked where they are routed
(:meth:`Governance.admit`, whichever entry they come through); this middleware covers what
only FastMCP sees: the lists (a denied or quarantined name is left out, exactly as if it did
not exist) and calls of the router's own ``router_*`` tools.
"""

from __future__ import annotations

from typing import Any

from fastmcp.exceptions import ToolError
from fastmcp.server.middleware import Middleware, MiddlewareContext

from mcp_router.governance.core import Governance

__all__ = ["GovernanceMiddleware"]

_ROUTER_PREFIX = "router_"
# router_get_routing_info names a tool in its argument: a hidden one must look unknown there.
_ROUTING_INFO = "router_get_routing_info"


class GovernanceMiddleware(Middleware):
    """Per-identity lists, and policies on the router's own tools."""

    def __init__(self, governance: Governance) -> None:
        self.governance = governance

    async def on_list_tools(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        """tools/list without the tools the client may not see."""
        return self.governance.filter(await call_next(context), lambda t: t.name)

    async def on_list_prompts(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        """prompts/list without the prompts the client may not see."""
        return self.governance.filter(await call_next(context), lambda p: p.name)

    async def on_list_resources(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        """resources/list without the resources the client may not see."""
        return self.governance.filter(await call_next(context), lambda r: str(r.uri))

    async def on_list_resource_templates(
        self, context: MiddlewareContext[Any], call_next: Any
    ) -> Any:
        """resources/templates/list without the templates the client may not see."""
        return self.governance.filter(await call_next(context), lambda t: t.uri_template)

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        """Apply policies to the ``router_*`` tools (routed names are checked when routed)."""
        name = context.message.name
        governance = self.governance
        if name.startswith(_ROUTER_PREFIX) and governance.filtering:
            identity = governance.identity()
            refused = governance.refusal(identity, "tools/call", name)
            if refused is not None:
                governance.record_denial(
                    identity, "tools/call", name, refused, context.message.arguments
                )
                raise ToolError(f"mcp-router: {refused}")
            if name == _ROUTING_INFO:
                asked = (context.message.arguments or {}).get("tool_name")
                if isinstance(asked, str) and not governance.visible(asked, identity):
                    # the very words of an unknown name (gateway/management.py)
                    raise ToolError(
                        f"unknown tool '{asked}'; call tools/list for the exposed names"
                    )
        return await call_next(context)
