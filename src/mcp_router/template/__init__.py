"""The bundled demo MCP server (``mcp-server``); see :mod:`mcp_router.template.server`."""

from mcp_router.template.server import create_server, main

__all__ = ["create_server", "main"]
