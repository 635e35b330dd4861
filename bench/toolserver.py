"""A generated MCP backend with N tools, for the catalog-size benchmarks.

``python bench/toolserver.py --tools N [--impl fastmcp|raw] [--transport stdio|http] [--port P]
[--json-response]``

Tools are ``tool_0`` .. ``tool_{N-1}``; each takes ``{"text": string}`` and echoes it back.

Two implementations:

- ``fastmcp`` (default): a FastMCP server, stdio or streamable HTTP (``/mcp``). Importing
  FastMCP and the SDK dominates its start-up (about a second of CPU on this machine kind).
- ``raw`` (stdio only): a stdlib-only JSON-RPC loop that speaks just enough MCP (initialize,
  ping, tools/list, tools/call) to be a correct handshake-era backend. It starts in tens of
  milliseconds, so a router's start-up time with it measures the router, not its children.

Run by path (not ``-m``) so that it works from any working directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

SERVER_NAME = "bench-toolserver"
_PROTOCOLS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")


def _description(i: int) -> str:
    return f"Generated benchmark tool number {i}: returns the given text unchanged."


def _schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "Text to echo back."}},
        "required": ["text"],
    }


# ---------------------------------------------------------------------------------- raw stdio


def _raw_result(request: dict[str, Any], tools: list[dict[str, Any]]) -> dict[str, Any]:
    method = request.get("method")
    params = request.get("params") or {}
    if method == "initialize":
        wanted = params.get("protocolVersion")
        return {
            "protocolVersion": wanted if wanted in _PROTOCOLS else _PROTOCOLS[-1],
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": SERVER_NAME, "version": "1.0"},
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": tools}
    if method == "tools/call":
        text = str((params.get("arguments") or {}).get("text", ""))
        return {"content": [{"type": "text", "text": text}], "isError": False}
    raise LookupError(method)


def serve_raw(count: int) -> None:
    """Serve MCP over stdio with nothing but the standard library."""
    tools = [
        {"name": f"tool_{i}", "description": _description(i), "inputSchema": _schema()}
        for i in range(count)
    ]
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if "id" not in request or "method" not in request:
            continue  # a notification or a response: nothing to answer
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        try:
            reply["result"] = _raw_result(request, tools)
        except LookupError:
            reply["error"] = {"code": -32601, "message": f"Method not found: {request['method']}"}
        out.write(json.dumps(reply, separators=(",", ":")) + "\n")
        out.flush()


# ---------------------------------------------------------------------------------- FastMCP


def build_fastmcp(count: int) -> Any:
    """A FastMCP server with ``count`` echo tools."""
    from fastmcp import FastMCP

    server = FastMCP(name=SERVER_NAME)

    def make(i: int) -> Any:
        async def tool(text: str) -> str:
            return text

        tool.__name__ = f"tool_{i}"
        tool.__doc__ = _description(i)
        return tool

    for i in range(count):
        server.tool(make(i), name=f"tool_{i}", output_schema=None)
    return server


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until stdin closes (stdio) or the process is stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tools", type=int, default=50)
    parser.add_argument("--impl", choices=("fastmcp", "raw"), default="fastmcp")
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--json-response",
        action="store_true",
        help="HTTP: answer POSTs with a JSON body instead of an SSE stream",
    )
    args = parser.parse_args(argv)
    if args.impl == "raw":
        if args.transport != "stdio":
            parser.error("--impl raw serves stdio only")
        serve_raw(args.tools)
        return
    server = build_fastmcp(args.tools)
    try:
        if args.transport == "stdio":
            server.run("stdio", show_banner=False, log_level="WARNING")
        else:
            server.run(
                "http",
                show_banner=False,
                host=args.host,
                port=args.port,
                log_level="WARNING",
                uvicorn_config={"access_log": False},
                json_response=args.json_response,
            )
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
