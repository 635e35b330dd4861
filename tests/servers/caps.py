"""A FastMCP test backend that reports what its client declared.

``python tests/servers/caps.py --transport stdio``

- tool ``declared()``: the ``capabilities`` of the client's ``initialize`` (JSON, no nulls);
- tool ``ask_roots()``: roots/list to the client, during the call; the root URIs, one a line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from fastmcp import Context, FastMCP


def create_server() -> FastMCP:
    """The capability-reporting test server."""
    mcp = FastMCP("caps")

    @mcp.tool(description="The capabilities the client declared in initialize, as JSON.")
    def declared(ctx: Context) -> str:
        params = ctx.session.client_params
        caps = params.capabilities if params is not None else None
        dumped = caps.model_dump(by_alias=True, mode="json", exclude_none=True) if caps else {}
        return json.dumps(dumped, sort_keys=True)

    @mcp.tool(description="Asks the client for its roots during the call.")
    async def ask_roots(ctx: Context) -> str:
        roots = await ctx.list_roots()
        return "\n".join(str(r.uri) for r in roots)

    return mcp


def main(argv: list[str] | None = None) -> None:
    """Run the server over stdio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transport", choices=["stdio"], default="stdio")
    parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    create_server().run("stdio", show_banner=False)


if __name__ == "__main__":
    main()
