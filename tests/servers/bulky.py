"""A FastMCP test backend that answers with as many bytes as asked.

``python tests/servers/bulky.py --transport http|sse --port N [--json-response]``. Tools:
``big(size)`` returns a text of ``size`` bytes; ``echo(text)``. ``/healthz`` answers 200.
"""

from __future__ import annotations

import argparse

from fastmcp import FastMCP
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transport", choices=["http", "sse"], default="http")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--json-response", action="store_true")
    args = parser.parse_args()
    mcp = FastMCP("bulky")

    @mcp.tool
    def big(size: int) -> str:
        """A text of ``size`` bytes."""
        return "y" * size

    @mcp.tool
    def echo(text: str) -> str:
        """``text``, back."""
        return text

    @mcp.custom_route("/healthz", methods=["GET"])
    async def healthz(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    options = {"json_response": True} if args.json_response else {}
    mcp.run(
        args.transport,
        show_banner=False,
        host="127.0.0.1",
        port=args.port,
        path="/mcp" if args.transport == "http" else "/sse",
        log_level="WARNING",
        **options,
    )


if __name__ == "__main__":
    main()
