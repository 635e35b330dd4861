"""A FastMCP test backend whose tool definitions change at run time.

``python tests/servers/mutable.py --transport stdio|http --port N``

Tools: ``target(text)`` (the tool whose definition changes) and ``mutate(version)``, which
replaces ``target`` with a definition of another version — a new description, a new input
schema (an added ``count`` parameter) and a new title — keeps its name, and sends
``notifications/tools/list_changed`` to the calling session. ``target`` answers with the
version it was called in, so a test can tell which definition served a call.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.tools.base import Tool


def _target(version: int) -> Tool:
    if version == 1:

        def target(text: str) -> dict[str, Any]:
            return {"version": 1, "text": text}

        return Tool.from_function(target, description="Echo the text (version 1).")

    def target_v(text: str, count: int = 1) -> dict[str, Any]:
        return {"version": version, "text": text * count}

    return Tool.from_function(
        target_v,
        name="target",
        title=f"Target v{version}",
        description=f"Repeat the text count times (version {version}).",
    )


def create_server() -> FastMCP:
    """The server, with ``target`` at version 1."""
    mcp = FastMCP("mutable")
    mcp.add_tool(_target(1))

    @mcp.tool
    async def mutate(version: int, ctx: Context) -> str:
        """Swap ``target`` for the definition of ``version`` and announce the change."""
        mcp.local_provider.remove_tool("target")
        mcp.add_tool(_target(version))
        await ctx.send_notification(mcp_types.ToolListChangedNotification())
        return f"target is now version {version}"

    return mcp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    server = create_server()
    if args.transport == "stdio":
        server.run("stdio", show_banner=False)
    else:
        server.run("http", show_banner=False, host="127.0.0.1", port=args.port, path="/mcp")


if __name__ == "__main__":
    main()
