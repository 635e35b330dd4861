"""What a large catalog costs a client: tools/list size with and without tool discovery.

``uv run python bench/catalog_size.py [--json]``

Runs the router over stdio (as Claude Code would) in front of tests/servers/catalog.py (200
realistic tools), once with ``routing.tool_discovery: all`` and once with ``search``, and
reports the size of the ``tools/list`` result as sent on the wire (compact JSON, bytes) and an
approximate token count (bytes / 4). In search mode the result of one typical
``router_search_tools`` call (limit 5) is measured too, since that is what the model reads
instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import yaml
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "tests" / "servers" / "catalog.py"
QUERY = "convert euros to dollars"


def _config(directory: Path, mode: str) -> Path:
    path = directory / f"{mode}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "routing": {"tool_discovery": mode},
                "backends": [{"name": "cat", "command": sys.executable, "args": [str(CATALOG)]}],
            }
        )
    )
    return path


def _wire_bytes(model: Any) -> int:
    return len(model.model_dump_json(by_alias=True, exclude_none=True).encode())


async def _measure(config: Path, mode: str) -> dict[str, Any]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_router.cli", "--config", str(config), "--log-level", "WARNING"],
    )
    with anyio.fail_after(120):
        async with Client(params, mode="legacy") as client:
            listed = await client.list_tools()
            row: dict[str, Any] = {
                "mode": mode,
                "tools_listed": len(listed.tools),
                "list_bytes": _wire_bytes(listed),
            }
            row["list_tokens"] = row["list_bytes"] // 4
            if mode == "search":
                found = await client.call_tool("router_search_tools", {"query": QUERY, "limit": 5})
                row["search_bytes"] = _wire_bytes(found)
                row["search_tokens"] = row["search_bytes"] // 4
    return row


async def _main(as_json: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = [await _measure(_config(Path(tmp), mode), mode) for mode in ("all", "search")]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print("tools/list for a 200-tool backend behind mcp-router (compact JSON; tokens ~ bytes/4)")
    print(f"{'mode':<8} {'tools listed':>12} {'bytes':>9} {'~tokens':>9}")
    for row in rows:
        print(
            f"{row['mode']:<8} {row['tools_listed']:>12} {row['list_bytes']:>9} "
            f"{row['list_tokens']:>9}"
        )
    search = rows[1]
    print(
        f"one router_search_tools call (limit 5, {QUERY!r}): {search['search_bytes']} bytes, "
        f"~{search['search_tokens']} tokens"
    )
    ratio = rows[0]["list_bytes"] / max(1, search["list_bytes"])
    print(f"tools/list is {ratio:.0f}x smaller in search mode")


def main() -> None:
    """Run both measurements and print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    anyio.run(_main, args.json)


if __name__ == "__main__":
    main()
