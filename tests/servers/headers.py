"""A FastMCP test backend that reports the HTTP headers its requests arrive with.

``python tests/servers/headers.py --transport http|sse --port N [--name NAME]``

Tools: ``request_headers`` (every header of the HTTP request carrying the call, lower-cased),
``whoami`` (``--name``), ``hold`` (sleeps, to keep calls in flight) and ``ping_text``.
"""

from __future__ import annotations

import asyncio

from fastmcp import FastMCP
from fastmcp.server.dependencies import get_http_headers
from serving import parser, serve


def create_server(name: str) -> FastMCP:
    """The test server; ``name`` is what ``whoami`` answers."""
    mcp = FastMCP(name="headers", version="1.0.0")

    @mcp.tool
    def request_headers() -> dict[str, str]:
        """Every header of the HTTP request that carried this call (nothing filtered)."""
        return get_http_headers(include_all=True)

    @mcp.tool
    def whoami() -> str:
        """The name this instance was started with (--name)."""
        return name

    @mcp.tool
    async def hold(seconds: float = 0.5) -> str:
        """Sleep, then answer: keeps a call in flight."""
        await asyncio.sleep(seconds)
        return f"held {seconds}s"

    @mcp.tool
    def ping_text(text: str = "pong") -> str:
        """Echo the text."""
        return text

    return mcp


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__, default="http", name="headers").parse_args(argv)
    serve(create_server(args.name), args)


if __name__ == "__main__":
    main()
