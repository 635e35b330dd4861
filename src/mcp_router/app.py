"""The router as a FastMCP server object, for ``fastmcp run`` and ``fastmcp install``.

::

    fastmcp run src/mcp_router/app.py:server                 # stdio
    fastmcp run src/mcp_router/app.py:server --transport http --port 8000

The server is built on first access of ``server`` (or by :func:`create_server`) from the same
settings as ``mcp-router``: ``MCP_BACKENDS_CONFIG`` (else ``config/backends.yaml`` in the current
directory, else the built-in demo config) and the other ``MCP_*`` variables. Backends start in
the server's lifespan, which ``fastmcp run`` enters. Prefer ``mcp-router`` itself for the
router's own HTTP front (body limit, /metrics, /status): ``fastmcp run --transport http`` serves
the MCP endpoint with FastMCP's defaults.
"""

from __future__ import annotations

import sys
from typing import Any

from fastmcp import FastMCP

from mcp_router.config import ConfigError, load_effective_config
from mcp_router.logs import configure_logging
from mcp_router.settings import load_settings

__all__ = ["create_server", "server"]

server: FastMCP  # built on first access, see __getattr__
_server: FastMCP | None = None


def create_server() -> FastMCP:
    """Build the router's FastMCP server from the environment (exits 2 on a bad config)."""
    from mcp_router.gateway.server import build_router

    try:
        settings = load_settings()
        config = load_effective_config(settings)
    except ConfigError as exc:
        print(f"mcp-router: invalid configuration\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    return build_router(config, settings).server


def __getattr__(name: str) -> Any:
    """``server`` is built lazily, so importing this module has no side effects."""
    global _server
    if name == "server":
        if _server is None:
            _server = create_server()
        return _server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
