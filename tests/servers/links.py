"""A FastMCP test backend that hands out links to resources it neither lists nor templates.

``python tests/servers/links.py --transport stdio|http --port N``

- tool ``make_note(name)``: a text item, a ``resource_link`` to ``mem://notes/{name}`` and the
  same note embedded (``resource``);
- prompt ``note_prompt(name)``: one message embedding ``mem://notes/{name}``;
- ``resources/read`` serves any ``mem://notes/...`` URI (lists stay empty: no resource, no
  template), answering with the URI it was asked for, so a test sees which URI arrived.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import mcp_types
from fastmcp import FastMCP
from fastmcp.prompts.base import Message, PromptResult
from fastmcp.tools.base import ToolResult
from mcp.shared.exceptions import MCPError

PREFIX = "mem://notes/"


def note_text(uri: str) -> str:
    """What reading ``uri`` returns."""
    return f"note at {uri}"


def create_server() -> FastMCP:
    """The links test server."""
    mcp = FastMCP("links")

    @mcp.tool(description="Creates a note and returns a link to it and the note embedded.")
    def make_note(name: str) -> ToolResult:
        uri = f"{PREFIX}{name}"
        return ToolResult(
            content=[
                mcp_types.TextContent(type="text", text=f"created {name}"),
                mcp_types.ResourceLink(type="resource_link", uri=uri, name=name),
                mcp_types.EmbeddedResource(
                    type="resource",
                    resource=mcp_types.TextResourceContents(
                        uri=uri, text=note_text(uri), mime_type="text/plain"
                    ),
                ),
            ]
        )

    @mcp.prompt(description="A prompt that embeds a note.")
    def note_prompt(name: str) -> PromptResult:
        uri = f"{PREFIX}{name}"
        return PromptResult(
            messages=[
                Message(
                    role="user",
                    content=mcp_types.EmbeddedResource(
                        type="resource",
                        resource=mcp_types.TextResourceContents(uri=uri, text=note_text(uri)),
                    ),
                )
            ]
        )

    low = mcp._mcp_server

    async def read(_ctx: Any, params: mcp_types.ReadResourceRequestParams) -> Any:
        uri = str(params.uri)
        if not uri.startswith(PREFIX):
            raise MCPError(mcp_types.INVALID_PARAMS, f"Resource not found: {uri}")
        return mcp_types.ReadResourceResult(
            contents=[mcp_types.TextResourceContents(uri=uri, text=note_text(uri))]
        )

    low.add_request_handler("resources/read", mcp_types.ReadResourceRequestParams, read)
    return mcp


def main(argv: list[str] | None = None) -> None:
    """Run the server."""
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
