"""mcp-router: many MCP servers behind one endpoint."""

import os

# FastMCP configures its own rich console logging and a banner at import time. The router owns
# logging (stderr only, text or JSON lines), so FastMCP's set-up is turned off before anything
# in the package imports it. An explicit setting in the environment still wins.
os.environ.setdefault("FASTMCP_LOG_ENABLED", "false")
os.environ.setdefault("FASTMCP_SHOW_SERVER_BANNER", "false")

__version__ = "0.1.0"
