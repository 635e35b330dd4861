"""Lists are served from the cached wire form of the same list, and never stale.

An in-process router fronts the demo server and the ``mutable`` test server (both over stdio);
the SDK client talks to its MCP server in memory. Shown: a repeated list is answered from the
cache (`ListCache` holds one entry per list, method and cursor) and is identical to the first;
each page of a paginated list is its own entry; when a backend changes its catalog, the next
list shows the change (a new index snapshot is a new key), and the client's views and
policies are covered by the end-to-end tests of those features (test_client_capabilities.py,
test_policies.py), which run through this cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcp_router.gateway.list_cache import ListCachingFastMCP
from support import PYTHON, SERVERS, in_process_router, router_client, wait_until_async

pytestmark = pytest.mark.timeout(120, func_only=True)


def _config(tmp_path: Path, page_size: int | None = None) -> Path:
    import yaml

    routing: dict[str, Any] = {"pinning": "off"}
    if page_size is not None:
        routing["list_page_size"] = page_size
    backends = [
        {
            "name": "demo",
            "command": PYTHON,
            "args": ["-m", "mcp_router.template", "--log-level", "WARNING"],
            "connect_timeout_seconds": 60,
        },
        {
            "name": "mut",
            "command": PYTHON,
            "args": [str(SERVERS / "mutable.py"), "--transport", "stdio"],
            "connect_timeout_seconds": 60,
        },
    ]
    path = tmp_path / "backends.yaml"
    path.write_text(yaml.safe_dump({"routing": routing, "backends": backends}))
    return path


def _cache(server: Any) -> Any:
    assert isinstance(server, ListCachingFastMCP)
    return server.list_cache


async def test_repeated_lists_come_from_the_cache_and_equal_the_first(tmp_path: Path) -> None:
    async with in_process_router(_config(tmp_path)) as router:
        cache = _cache(router.server)
        async with router_client(router, cache=None) as client:
            first = [
                (await client.list_tools()).model_dump(by_alias=True),
                (await client.list_prompts()).model_dump(by_alias=True),
                (await client.list_resources()).model_dump(by_alias=True),
                (await client.list_resource_templates()).model_dump(by_alias=True),
            ]
            entries, hits = len(cache), cache.hits
            again = [
                (await client.list_tools()).model_dump(by_alias=True),
                (await client.list_prompts()).model_dump(by_alias=True),
                (await client.list_resources()).model_dump(by_alias=True),
                (await client.list_resource_templates()).model_dump(by_alias=True),
            ]
            hits = cache.hits - hits
    assert entries == 4  # one per list method
    assert hits == 4 and len(cache) == 4  # the second round was served from them
    assert again == first
    names = {t["name"] for t in first[0]["tools"]}
    assert {"demo_echo", "mut_target", "router_list_backends"} <= names
    assert {p["name"] for p in first[1]["prompts"]} >= {"demo_summarize", "demo_code_review"}


async def test_each_page_is_cached_under_its_cursor(tmp_path: Path) -> None:
    async with in_process_router(_config(tmp_path, page_size=3)) as router:
        cache = _cache(router.server)
        async with router_client(router, cache=None) as client:

            async def pages() -> list[dict[str, Any]]:
                out, cursor = [], None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    out.append(page.model_dump(by_alias=True))
                    cursor = page.next_cursor
                    if cursor is None:
                        return out

            first = await pages()
            hits = cache.hits
            second = await pages()
            hits = cache.hits - hits
    assert len(first) >= 3
    assert hits == len(first)
    assert second == first
    assert len(cache) == len(first)
    listed = [t["name"] for page in first for t in page["tools"]]
    assert len(listed) == len(set(listed))  # the pages are the whole list, once


async def test_a_changed_catalog_is_listed_afresh(tmp_path: Path) -> None:
    """The backend swaps a tool's definition: the next list shows the new one."""
    async with (
        in_process_router(_config(tmp_path)) as router,
        router_client(router, cache=None) as client,
    ):

        async def description() -> str | None:
            tools = (await client.list_tools()).tools
            return next(t.description for t in tools if t.name == "mut_target")

        before = await description()
        assert before == await description()  # the second one came from the cache
        result = await client.call_tool("mut_mutate_tool", {"description": "Echo v2."})
        assert not result.is_error

        async def changed() -> bool:
            return await description() == "Echo v2."

        await wait_until_async(changed, 30, "the list shows the new definition")
    assert before is not None and "version 1" in before
