"""A test backend that repeats back the secrets it was given: the secrets tests' backend.

``python tests/servers/leaky.py --transport http --port N --path /x/y/mcp``: the MCP endpoint
at ``--path``, plus ``GET /healthz``. Tools: ``ok`` ("fine"); ``leak`` fails (``isError``)
with a message quoting the query string and credential headers of the request carrying it;
``break_now``: from then on every request to ``--path`` is answered ``404`` and ``/healthz``
``503`` (the router's calls then fail with errors of its own).

``python tests/servers/leaky.py --transport stdio``: at start-up it writes its environment's
``DB_PASSWORD``, ``GITHUB_VALUE``, ``DATABASE_URL`` and ``LOG_LEVEL`` onto stderr and, as a
non-JSON line, onto stdout (the wire), then serves MCP; its ``leak`` tool fails quoting them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server.dependencies import get_http_request

_ECHOED = ("DB_PASSWORD", "GITHUB_VALUE", "DATABASE_URL", "LOG_LEVEL")


def _environment() -> str:
    return " ".join(f"{name}={os.environ.get(name, '-')}" for name in _ECHOED)


def _request_echo(path: str, query: str, headers: dict[str, str]) -> str:
    return (
        f"unknown session for {path}?{query}; "
        f"authorization={headers.get('authorization', '-')}; "
        f"x-db-password={headers.get('x-db-password', '-')}"
    )


def create_http_app(path: str) -> Any:
    """The HTTP app: the MCP server at ``path``, breakable by its ``break_now`` tool."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response

    state = {"broken": False}
    mcp = FastMCP(name="leaky", version="1.0.0")

    @mcp.tool
    def ok() -> str:
        """Answer 'fine'."""
        return "fine"

    @mcp.tool
    def leak() -> str:
        """Fail, quoting the credentials this request arrived with."""
        request = get_http_request()
        raise ToolError(
            "refused: " + _request_echo(request.url.path, request.url.query, dict(request.headers))
        )

    @mcp.tool
    def break_now() -> str:
        """From now on, answer every request with an error echoing what was sent."""
        state["broken"] = True
        return "broken"

    @mcp.custom_route("/healthz", methods=["GET"])
    async def healthz(request: Request) -> Response:
        if state["broken"]:
            echo = _request_echo(request.url.path, request.url.query, dict(request.headers))
            return PlainTextResponse(echo, status_code=503)
        return PlainTextResponse("ok")

    inner = mcp.http_app(path=path)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and state["broken"] and scope["path"] == path:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            query = scope.get("query_string", b"").decode("latin-1")
            echo = _request_echo(scope["path"], query, headers)
            await PlainTextResponse(echo, status_code=404)(scope, receive, send)
            return
        await inner(scope, receive, send)  # lifespan included

    return app


def create_stdio_server() -> FastMCP:
    """The stdio server: its ``leak`` tool fails quoting the environment."""
    mcp = FastMCP(name="leaky-stdio", version="1.0.0")

    @mcp.tool
    def leak() -> str:
        """Fail, quoting the environment's secrets."""
        raise ToolError(f"cannot open the database: {_environment()}")

    return mcp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transport", choices=["stdio", "http"], default="http")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--path", default="/mcp")
    args = parser.parse_args(argv)
    if args.transport == "stdio":
        print(f"leaky stderr: {_environment()}", file=sys.stderr, flush=True)
        print(f"leaky garbage: {_environment()}", flush=True)
        create_stdio_server().run("stdio", show_banner=False)
        return
    import uvicorn

    uvicorn.run(create_http_app(args.path), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
