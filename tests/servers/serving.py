"""What every test server in this directory shares: its command line, how it serves, and the
``resources/subscribe`` handlers FastMCP has no API for.

The servers run as scripts (``python tests/servers/NAME.py``), so this module is imported by
plain name from their directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import mcp_types
from fastmcp import FastMCP
from mcp.server.context import ServerRequestContext

Subscriptions = dict[int, tuple[Any, set[str]]]
"""Connection id -> (a session of that connection, the URIs it subscribed to)."""


def parser(
    description: str | None,
    *,
    transports: Sequence[str] = ("stdio", "http", "sse"),
    default: str = "stdio",
    name: str | None = None,
) -> argparse.ArgumentParser:
    """``--transport`` and ``--port`` (and ``--name`` with its default, if ``name`` is given)."""
    cli = argparse.ArgumentParser(description=description)
    cli.add_argument("--transport", choices=list(transports), default=default)
    cli.add_argument("--port", type=int, default=8000)
    if name is not None:
        cli.add_argument("--name", default=name)
    return cli


def serve(
    server: FastMCP,
    args: argparse.Namespace,
    *,
    app: Callable[[], Any] | None = None,
    **run: Any,
) -> None:
    """Serve over stdio, or on 127.0.0.1: ``/mcp`` (http) or ``/sse`` (sse). ``app`` builds an
    ASGI app from ``server`` that uvicorn runs instead (only when serving HTTP: building it
    costs start-up time a stdio child does not have to pay); ``run`` goes to ``FastMCP.run``.
    Logs go to stderr, warnings and worse."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    if args.transport == "stdio":
        server.run("stdio", show_banner=False, **run)
    elif app is not None:
        import uvicorn  # only the servers that bring their own ASGI app need it

        uvicorn.run(app(), host="127.0.0.1", port=args.port, log_level="warning")
    else:
        path = "/mcp" if args.transport == "http" else "/sse"
        server.run(
            args.transport, show_banner=False, host="127.0.0.1", port=args.port, path=path, **run
        )


def add_subscriptions(mcp: FastMCP) -> Subscriptions:
    """Accept ``resources/subscribe`` / ``unsubscribe``, kept per connection; the server then
    advertises ``resources.subscribe`` because the low-level server sees the handler. Returns
    the live table (to notify subscribers)."""
    subscriptions: Subscriptions = {}

    async def subscribe(
        ctx: ServerRequestContext[Any], params: mcp_types.SubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        entry = subscriptions.setdefault(id(ctx.session._connection), (ctx.session, set()))
        entry[1].add(str(params.uri))
        return mcp_types.EmptyResult()

    async def unsubscribe(
        ctx: ServerRequestContext[Any], params: mcp_types.UnsubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        entry = subscriptions.get(id(ctx.session._connection))
        if entry is not None:
            entry[1].discard(str(params.uri))
        return mcp_types.EmptyResult()

    low = mcp._mcp_server
    low.add_request_handler("resources/subscribe", mcp_types.SubscribeRequestParams, subscribe)
    low.add_request_handler(
        "resources/unsubscribe", mcp_types.UnsubscribeRequestParams, unsubscribe
    )
    return subscriptions
