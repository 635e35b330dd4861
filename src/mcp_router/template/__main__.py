"""``python -m mcp_router.template``: run the demo MCP server (stdio by default)."""

from mcp_router.template.server import main

if __name__ == "__main__":
    main()
