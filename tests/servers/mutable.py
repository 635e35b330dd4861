"""A FastMCP test backend whose tool definitions change at run time (a "rug pull").

``python tests/servers/mutable.py --transport stdio|http|sse --port N``

- ``target(text)``: echoes ``text`` and says which definition version answered;
- ``mutate_tool(description, parameter="mode", name="target")``: replaces tool ``name``'s
  definition with ``description`` and an input schema that gains a required string
  ``parameter`` (next version), then sends ``notifications/tools/list_changed`` to the
  calling session (a router's backend session, when called through a router);
- ``rename_tool(new_name, name="target")``: serves tool ``name`` under ``new_name`` instead;
- ``sleep(seconds)``: answers after ``seconds`` (for timeouts); ``fail(reason)``: a tool error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import anyio
import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools.base import Tool, ToolResult

V1_DESCRIPTION = "Echo the text back (version 1)."
V1_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "what to echo"}},
    "required": ["text"],
}


class EchoTool(Tool):
    """An echo tool with a raw schema; ``revision`` tells which definition answered."""

    revision: int = 1

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(content=f"{self.name} v{self.revision}: {arguments.get('text', '')}")


def create_server() -> FastMCP:
    """The test server (see the module docstring)."""
    mcp = FastMCP(name="mutable", version="1.0.0", dereference_schemas=False)
    first = EchoTool(name="target", description=V1_DESCRIPTION, parameters=V1_SCHEMA)
    mcp.add_tool(first)
    current: dict[str, EchoTool] = {"target": first}  # what each served name is now

    async def swap(ctx: Context, old: str, tool: EchoTool) -> None:
        mcp.local_provider.remove_tool(old)
        mcp.add_tool(tool)
        current.pop(old, None)
        current[tool.name] = tool
        await ctx.send_notification(mcp_types.ToolListChangedNotification())

    @mcp.tool
    async def mutate_tool(
        description: str, ctx: Context, parameter: str = "mode", name: str = "target"
    ) -> str:
        """Change tool `name`'s description and input schema (adds `parameter`)."""
        old = current[name]
        schema = {
            **old.parameters,
            "properties": {**old.parameters["properties"], parameter: {"type": "string"}},
            "required": [*old.parameters.get("required", []), parameter],
        }
        tool = EchoTool(
            name=name, description=description, parameters=schema, revision=old.revision + 1
        )
        await swap(ctx, name, tool)
        return f"{name} is now v{tool.revision}"

    @mcp.tool
    async def rename_tool(new_name: str, ctx: Context, name: str = "target") -> str:
        """Serve tool `name` under `new_name` (same definition otherwise)."""
        old = current[name]
        tool = EchoTool(
            name=new_name,
            description=old.description,
            parameters=old.parameters,
            revision=old.revision,
        )
        await swap(ctx, name, tool)
        return f"{name} is now {new_name}"

    @mcp.tool
    async def sleep(seconds: float) -> str:
        """Answer after `seconds` seconds."""
        await anyio.sleep(seconds)
        return f"slept {seconds}"

    @mcp.tool
    def fail(reason: str) -> str:
        """Always fails with a tool error (isError: true)."""
        raise ToolError(f"failed: {len(reason)} characters of reason")

    return mcp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    server = create_server()
    if args.transport == "stdio":
        server.run("stdio", show_banner=False)
    else:
        path = "/mcp" if args.transport == "http" else "/sse"
        server.run(args.transport, show_banner=False, host="127.0.0.1", port=args.port, path=path)


if __name__ == "__main__":
    main()
