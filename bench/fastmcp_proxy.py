"""FastMCP's own proxy in front of one backend, for comparison with mcp-router.

``python bench/fastmcp_proxy.py --url http://127.0.0.1:P/mcp --port Q``

Serves ``fastmcp.server.create_proxy(url)`` (FastMCP's recommended proxy, default settings)
over streamable HTTP at ``/mcp`` on 127.0.0.1:Q. Run by path, from any working directory.
"""

from __future__ import annotations

import argparse
import contextlib


def main(argv: list[str] | None = None) -> None:
    """Serve the proxy until the process is stopped."""
    parser = argparse.ArgumentParser(description="FastMCP create_proxy(url) over HTTP")
    parser.add_argument("--url", required=True, help="backend streamable HTTP URL")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    from fastmcp.server import create_proxy

    proxy = create_proxy(args.url, name="fastmcp-proxy")
    with contextlib.suppress(KeyboardInterrupt):
        proxy.run(
            "http",
            show_banner=False,
            host="127.0.0.1",
            port=args.port,
            log_level="WARNING",
            uvicorn_config={"access_log": False},
        )


if __name__ == "__main__":
    main()
