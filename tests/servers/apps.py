"""A FastMCP test backend shaped like an MCP App: a tool whose ``_meta`` points at the ``ui://``
resource that renders it, plus the resource itself.

``python tests/servers/apps.py --transport stdio|http --port N``

- tool ``show_chart(points)``: ``_meta.ui.resourceUri`` (current MCP Apps form) and
  ``_meta["ui/resourceUri"]`` (the first drafts' form) both name ``ui://charts/view.html``;
  another ``_meta`` key (``vendor/tag``) that nobody should touch;
- resource ``ui://charts/view.html`` (HTML).
"""

from __future__ import annotations

from fastmcp import FastMCP
from serving import parser, serve

UI_URI = "ui://charts/view.html"
HTML = "<!doctype html><title>chart</title><div id=chart></div>"


def create_server() -> FastMCP:
    """The MCP Apps-shaped test server."""
    mcp = FastMCP("apps")

    @mcp.tool(
        description="Draws a chart of the points (rendered by the ui:// resource).",
        meta={
            "ui": {"resourceUri": UI_URI, "prefersBorder": True},
            "ui/resourceUri": UI_URI,
            "vendor/tag": "ui://not-a-pointer",
        },
    )
    def show_chart(points: list[float]) -> str:
        return f"{len(points)} points"

    @mcp.resource(UI_URI, mime_type="text/html;profile=mcp-app", name="chart-view")
    def view() -> str:
        return HTML

    return mcp


if __name__ == "__main__":
    serve(create_server(), parser(__doc__).parse_args())
