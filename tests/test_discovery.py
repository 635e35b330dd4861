"""Tool discovery for large catalogs (``routing.tool_discovery: search``).

Ranking is tested on the realistic 200-tool catalog of tests/servers/catalog.py (a distinctive
tool must rank first for a query about it); then a real router (HTTP) runs in search mode in
front of that server plus tests/servers/basic.py (pinned), driven by an MCP client.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import mcp_types as types
import pytest

from mcp_router.backends.manager import ExposedTool
from mcp_router.gateway.discovery import ToolSearchIndex, pinned_matcher, tokenize
from support import (
    MANAGEMENT_TOOLS,
    SEARCH_TOOLS,
    SERVERS,
    fastmcp_server,
    http_client,
    run_router,
    write_config,
)

sys.path.insert(0, str(SERVERS))
from catalog import DISTINCTIVE, catalog

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def index() -> ToolSearchIndex:
    tools = [
        ExposedTool(
            f"cat_{name}",
            "cat",
            "cat",
            name,
            types.Tool(name=f"cat_{name}", description=description, input_schema=schema),
        )
        for name, description, schema in catalog()
    ]
    assert len(tools) == 200
    return ToolSearchIndex(tools)


def test_tokenize_splits_snake_camel_and_plurals() -> None:
    assert tokenize("github_createIssue") == ["github", "create", "issue"]
    assert tokenize("listPullRequests HTTPServer") == ["list", "pull", "request", "http", "server"]
    assert tokenize("Queries, users & status") == ["query", "user", "status"]


@pytest.mark.parametrize(("tool", "query"), [(n, q) for n, (_, _, q) in DISTINCTIVE.items()])
def test_distinctive_tool_ranks_first(index: ToolSearchIndex, tool: str, query: str) -> None:
    hits = index.search(query, 5)
    assert hits, query
    assert hits[0].tool.original_name == tool, [h.tool.original_name for h in hits]


@pytest.mark.parametrize(
    ("tool", "query"),
    [
        ("k8s_delete_pod", "delete a kubernetes pod"),
        ("billing_export_invoices", "export invoices to csv"),
        ("calendar_create_event", "create a calendar event with attendees"),
        ("shipping_get_shipment", "get shipment by tracking number"),
        ("ci_list_pipelines", "list CI pipelines for a branch"),
    ],
)
def test_crud_tool_ranks_first(index: ToolSearchIndex, tool: str, query: str) -> None:
    hits = index.search(query, 5)
    assert hits[0].tool.original_name == tool, [h.tool.original_name for h in hits]


def test_search_limits_and_non_matches(index: ToolSearchIndex) -> None:
    assert len(index.search("list", 7)) == 7
    assert index.search("zzzz qqqq", 10) == []
    assert index.search("", 10) == []
    hits = index.search("invoice", 50)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h.tool.original_name.startswith("billing_") for h in hits[:10])


def test_pinned_matcher_globs() -> None:
    pinned = pinned_matcher(["basic_*", "cat_validate_iban"])
    assert pinned("basic_lookup")
    assert pinned("cat_validate_iban")
    assert not pinned("cat_validate_iban2")
    assert not pinned("xbasic_lookup")
    assert not pinned_matcher([])("anything")


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def router_base(module_tmp: Path) -> Iterator[str]:
    catalog_cmd = fastmcp_server("catalog", "stdio")
    basic_cmd = fastmcp_server("basic", "stdio")
    config = write_config(
        module_tmp / "search.yaml",
        [
            {"name": "cat", "command": catalog_cmd[0], "args": catalog_cmd[1:]},
            {"name": "basic", "command": basic_cmd[0], "args": basic_cmd[1:]},
        ],
        routing={"tool_discovery": "search", "pinned_tools": ["basic_*", "cat_validate_iban"]},
    )
    with run_router(config) as router:
        yield router.base


async def test_search_mode_lists_pinned_and_discovery_tools(router_base: str) -> None:
    async with http_client(f"{router_base}/mcp") as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        instructions = client.instructions
    basic = {"basic_create_order", "basic_stats", "basic_lookup", "basic_explode"}
    basic |= {"basic_snapshot", "basic_whoami"}
    assert listed == MANAGEMENT_TOOLS | SEARCH_TOOLS | basic | {"cat_validate_iban"}
    assert "router_search_tools" in (instructions or "")


async def test_search_returns_names_descriptions_and_schemas(router_base: str) -> None:
    async with http_client(f"{router_base}/mcp") as client:
        result = await client.call_tool(
            "router_search_tools", {"query": "convert euros to dollars", "limit": 3}
        )
    assert not result.is_error
    data = result.structured_content
    assert data is not None
    assert data["total_tools"] == 206
    assert len(data["results"]) == 3
    top = data["results"][0]
    assert top["name"] == "cat_convert_currency"
    assert top["description"].startswith("Convert a monetary amount")
    assert set(top["input_schema"]["properties"]) == {"amount", "from_currency", "to_currency"}


async def test_search_limit_is_validated(router_base: str) -> None:
    async with http_client(f"{router_base}/mcp") as client:
        result = await client.session.call_tool("router_search_tools", {"query": "x", "limit": 0})
    assert result.is_error


async def test_call_tool_goes_through_the_forwarder(router_base: str) -> None:
    async with http_client(f"{router_base}/mcp") as client:
        result = await client.call_tool(
            "router_call_tool",
            {"name": "cat_k8s_delete_pod", "arguments": {"id": "web-1", "namespace": "prod"}},
        )
        assert not result.is_error
        assert result.content[0].text == (  # type: ignore[union-attr]
            '{"tool": "k8s_delete_pod", "arguments": {"id": "web-1", "namespace": "prod"}}'
        )
        # a backend tool error comes back unchanged (isError), not as a router failure
        failed = await client.session.call_tool(
            "router_call_tool", {"name": "basic_explode", "arguments": {"reason": "boom"}}
        )
        assert failed.is_error
        assert "exploded: boom" in failed.content[0].text  # type: ignore[union-attr]
        unknown = await client.session.call_tool("router_call_tool", {"name": "cat_nope"})
        assert unknown.is_error
        assert "unknown tool 'cat_nope'" in unknown.content[0].text  # type: ignore[union-attr]
        # an unlisted tool stays callable by its exposed name
        direct = await client.session.call_tool("cat_validate_iban", {"iban": "FR76"})
        assert not direct.is_error
    metrics = httpx2.get(f"{router_base}/metrics", timeout=5).text
    assert 'name="cat_k8s_delete_pod"' in metrics  # counted like a direct call
    status = httpx2.get(f"{router_base}/status.json", timeout=5).json()
    cat = next(b for b in status["backends"] if b["name"] == "cat")
    assert cat["calls"] >= 2
    assert cat["p50_ms"] is not None
