"""A FastMCP test backend that misbehaves on demand, for the router's fault tests.

``python tests/servers/faulty.py --transport stdio|http|sse --port N --name NAME [modes]``
(http serves ``/mcp``, sse serves ``/sse``; both also serve ``GET /healthz``).

Tools, always present:
- ``work(x)`` returns ``{"instance": NAME, "pid": PID, "x": x}`` (which instance answered);
- ``slow(seconds)`` sleeps, then answers like ``work``;
- ``hang()`` never answers;
- ``crash()`` exits the process at once (no answer);
- ``fail(reason)`` returns a tool error (``isError: true``);
- ``set_health(status)`` sets the status code ``GET /healthz`` answers with.

Modes:
- ``--hang-on-call``: ``work`` and ``slow`` never answer (MCP ``ping`` still does);
- ``--crash-after N``: the process exits when the (N+1)-th ``work``/``slow`` call arrives,
  so N calls succeed and the next one finds the backend gone;
- ``--garbage``: adds ``garble(kind)``, which writes onto the stdio wire: ``text`` a non-JSON
  line and then never answers; ``response`` an invalid JSON-RPC response carrying the request's
  id and then never answers; ``stray`` a non-JSON line, then a normal answer;
- ``--extra-tool``: adds a ``bonus`` tool (to change the catalog across a restart);
- ``--health-status N``: initial status code of ``GET /healthz`` (default 200);
- ``--spawn-child``: starts a grandchild (``sleep``) that ignores stdin, in this process's
  group, as wrappers like ``npx`` do; ``--pid-file PATH`` writes "PID CHILD_PID" there.

It writes ``faulty NAME started (pid PID)`` to stderr at start-up, so a test can find it in
the router's log. Logs go to stderr only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import anyio
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from serving import parser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def create_server(args: argparse.Namespace, wire_fd: int | None) -> FastMCP:
    """The test server configured by the parsed command line."""
    mcp = FastMCP(name=f"faulty-{args.name}", version="1.0.0")
    state: dict[str, Any] = {"calls": 0, "health": args.health_status}

    def answer(x: Any) -> dict[str, Any]:
        return {"instance": args.name, "pid": os.getpid(), "x": x}

    async def admit() -> None:
        # Count the call first, so --crash-after kills the process on the call after N.
        state["calls"] += 1
        if args.crash_after is not None and state["calls"] > args.crash_after:
            print(f"faulty {args.name}: crashing on call {state['calls']}", file=sys.stderr)
            sys.stderr.flush()
            os._exit(3)
        if args.hang_on_call:
            await anyio.sleep_forever()

    @mcp.tool
    async def work(x: int = 0) -> dict[str, Any]:
        """Answer with the instance name, its pid and x."""
        await admit()
        return answer(x)

    @mcp.tool
    async def slow(seconds: float = 0.5, x: int = 0) -> dict[str, Any]:
        """Sleep, then answer like work."""
        await admit()
        await anyio.sleep(seconds)
        return answer(x)

    @mcp.tool
    async def hang() -> str:
        """Never answer."""
        await anyio.sleep_forever()
        return "unreachable"

    @mcp.tool
    def crash() -> str:
        """Exit the process at once, without answering."""
        os._exit(3)

    @mcp.tool
    def fail(reason: str = "failed on purpose") -> str:
        """Return a tool error (isError: true)."""
        raise ToolError(f"{args.name}: {reason}")

    @mcp.tool
    def set_health(status: int = 200) -> int:
        """Set the status code GET /healthz answers with."""
        state["health"] = status
        return status

    if args.extra_tool:

        @mcp.tool
        def bonus() -> str:
            """Only present when started with --extra-tool."""
            return f"bonus from {args.name}"

    if args.garbage:

        @mcp.tool
        async def garble(ctx: Context, kind: str = "text") -> str:
            """Write garbage onto the stdio wire (kind: text, response or stray)."""
            if wire_fd is None:
                raise ToolError("garble needs the stdio transport")
            if kind == "response":
                # Valid JSON, invalid JSON-RPC: wrong version, and a result that is not an object.
                bad = {"jsonrpc": "1.0", "id": _wire_id(ctx.request_id), "result": 42}
                os.write(wire_fd, (json.dumps(bad) + "\n").encode())
                await anyio.sleep_forever()
            os.write(wire_fd, b"this is not JSON-RPC {oops\n")
            if kind == "stray":
                return "answered after a stray line"
            await anyio.sleep_forever()
            return "unreachable"

    @mcp.custom_route("/healthz", methods=["GET"])
    async def healthz(_request: Request) -> Response:
        return JSONResponse({"name": args.name}, status_code=state["health"])

    return mcp


def _wire_id(request_id: str) -> int | str:
    """The JSON-RPC id as the client sent it (FastMCP reports it as a string)."""
    return int(request_id) if request_id.lstrip("-").isdigit() else request_id


def main(argv: list[str] | None = None) -> None:
    cli = parser(__doc__, name="faulty")
    cli.add_argument("--hang-on-call", action="store_true")
    cli.add_argument("--crash-after", type=int, default=None)
    cli.add_argument("--garbage", action="store_true")
    cli.add_argument("--extra-tool", action="store_true")
    cli.add_argument("--health-status", type=int, default=200)
    cli.add_argument("--spawn-child", action="store_true")
    cli.add_argument("--pid-file", default=None)
    args = cli.parse_args(argv)

    child_pid = 0
    if args.spawn_child:
        # Same process group, stdin and stdout detached: only a group kill stops it.
        child = subprocess.Popen(
            ["sleep", "300"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        child_pid = child.pid
    if args.pid_file:
        with open(args.pid_file + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {child_pid}\n")
        os.replace(args.pid_file + ".tmp", args.pid_file)

    # The SDK's stdio server diverts fd 1 to stderr while it serves; keep a private handle on
    # the real stdout pipe first, so --garbage can still write onto the wire.
    wire_fd = os.dup(1) if args.transport == "stdio" and args.garbage else None
    print(f"faulty {args.name} started (pid {os.getpid()})", file=sys.stderr, flush=True)
    server = create_server(args, wire_fd)
    if args.transport == "stdio":
        server.run("stdio", show_banner=False, log_level="WARNING")
    else:
        path = "/mcp" if args.transport == "http" else "/sse"
        server.run(
            args.transport,
            show_banner=False,
            host="127.0.0.1",
            port=args.port,
            path=path,
            log_level="WARNING",
            uvicorn_config={"timeout_graceful_shutdown": 1},
        )


if __name__ == "__main__":
    main()
