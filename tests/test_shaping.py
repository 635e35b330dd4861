"""Per-backend tool shaping: include/exclude globs, renames, description overrides.

Unit tests of :func:`mcp_router.shaping.shape_tools` and of the index it feeds, then one real
router (HTTP) in front of tests/servers/basic.py over stdio with a shaping config, driven by
an MCP client: filtered tools are neither listed nor callable (same error as an unknown tool),
renamed tools are namespaced and reach the backend under their original name, description
overrides show in tools/list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcp_router.backends.backend import Backend
from mcp_router.backends.manager import build_index
from mcp_router.config import ConfigError, load_config
from mcp_router.config.models import BackendConfig, ToolShapingConfig
from mcp_router.shaping import is_exposed, shape_tools
from support import fastmcp_server, http_client, run_router, write_config

pytestmark = pytest.mark.timeout(60)


def _tools(*names: str) -> dict[str, types.Tool]:
    return {
        n: types.Tool(name=n, description=f"about {n}", input_schema={"type": "object"})
        for n in names
    }


def _shaping(**kwargs: Any) -> ToolShapingConfig:
    return ToolShapingConfig.model_validate(kwargs)


# ----------------------------------------------------------------------------- unit


def test_identity_shaping_keeps_everything_in_order() -> None:
    tools = _tools("b", "a", "c")
    shaped = shape_tools(ToolShapingConfig(), tools)
    assert list(shaped) == ["b", "a", "c"]
    assert all(s.original == n and s.tool is tools[n] for n, s in shaped.items())


def test_include_and_exclude_globs() -> None:
    tools = _tools("get_user", "delete_user", "get_order", "admin_reset", "ping")
    shaping = _shaping(include=["get_*", "delete_*", "ping"], exclude=["delete_*", "*order"])
    assert list(shape_tools(shaping, tools)) == ["get_user", "ping"]
    assert is_exposed(_shaping(exclude=["admin_*"]), "get_user")
    assert not is_exposed(_shaping(exclude=["admin_*"]), "admin_reset")
    assert not is_exposed(_shaping(include=["x*"]), "get_user")
    # globs are case-sensitive
    assert not is_exposed(_shaping(include=["GET_*"]), "get_user")


def test_rename_and_description_override_keep_the_original_name() -> None:
    tools = _tools("whoami", "stats")
    shaping = _shaping(rename={"whoami": "identify"}, descriptions={"stats": "Custom."})
    shaped = shape_tools(shaping, tools)
    assert list(shaped) == ["identify", "stats"]
    assert shaped["identify"].original == "whoami"
    assert shaped["identify"].tool.name == "whoami"
    assert shaped["stats"].tool.description == "Custom."
    assert tools["stats"].description == "about stats"  # the catalog is not modified


def test_renames_may_swap_names() -> None:
    shaped = shape_tools(_shaping(rename={"a": "b", "b": "a"}), _tools("a", "b"))
    assert {n: s.original for n, s in shaped.items()} == {"b": "a", "a": "b"}


def test_rename_onto_an_existing_tool_is_not_applied(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mcp_router.shaping"):
        shaped = shape_tools(_shaping(rename={"a": "b"}), _tools("a", "b"), backend="x")
    assert {n: s.original for n, s in shaped.items()} == {"a": "a", "b": "b"}
    assert "rename of tool 'a' to 'b' not applied" in caplog.text


def test_rename_onto_an_excluded_tool_is_applied() -> None:
    shaped = shape_tools(_shaping(exclude=["b"], rename={"a": "b"}), _tools("a", "b"))
    assert {n: s.original for n, s in shaped.items()} == {"b": "a"}


def test_config_rejects_two_tools_renamed_to_one_name(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "backends:\n  - name: x\n    command: y\n    tools:\n      rename: {a: z, b: z}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "backends[0].tools.rename" in str(info.value)
    assert "both renamed to 'z'" in str(info.value)


def test_config_rejects_unknown_shaping_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("backends:\n  - name: x\n    command: y\n    tools:\n      hide: [a]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "backends[0].tools.hide" in str(info.value)


def test_index_namespaces_shaped_names_and_keeps_originals() -> None:
    config = BackendConfig.model_validate(
        {
            "name": "gh",
            "command": "x",
            "tools": {
                "exclude": ["delete_*"],
                "rename": {"create_issue": "open_issue", "bad name!": "fine"},
                "descriptions": {"list_issues": "List them."},
            },
        }
    )
    backend = Backend(config, request_timeout=5)
    backend.catalog = type(backend.catalog)(
        tools=_tools("create_issue", "delete_repo", "list_issues", "bad name!")
    )
    index = build_index([backend], "_", True)
    assert set(index.tools) == {"gh_open_issue", "gh_list_issues", "gh_fine"}
    assert index.tools["gh_open_issue"].original_name == "create_issue"
    assert index.tools["gh_open_issue"].tool.name == "gh_open_issue"
    assert index.tools["gh_list_issues"].tool.description == "List them."
    assert index.tools["gh_fine"].original_name == "bad name!"


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def router_url(module_tmp: Path) -> Iterator[str]:
    config = write_config(
        module_tmp / "shaping.yaml",
        [
            {
                "name": "basic",
                "command": fastmcp_server("basic", "stdio")[0],
                "args": [*fastmcp_server("basic", "stdio")[1:], "--name", "shaped"],
                "tools": {
                    "exclude": ["explode", "snap*"],
                    "rename": {"whoami": "identify"},
                    "descriptions": {"stats": "Overridden description of stats."},
                },
            }
        ],
    )
    with run_router(config) as router:
        yield router.url


async def _error(client: Client, name: str, arguments: dict[str, Any]) -> str:
    try:
        result = await client.session.call_tool(name, arguments)
    except MCPError as exc:
        return exc.error.message
    assert result.is_error, result
    return " ".join(getattr(block, "text", "") for block in result.content)


async def test_listing_shows_shaped_tools(router_url: str) -> None:
    async with http_client(router_url) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    backend_tools = {n for n in tools if n.startswith("basic_")}
    assert backend_tools == {
        "basic_create_order",
        "basic_stats",
        "basic_lookup",
        "basic_identify",
    }
    assert tools["basic_stats"].description == "Overridden description of stats."
    assert tools["basic_identify"].description == (
        "The name this instance was started with (--name)."
    )
    # everything else passes through unchanged
    assert tools["basic_lookup"].meta is not None
    assert tools["basic_lookup"].meta["example.com/owner"] == "team-a"


async def test_filtered_tools_are_unknown(router_url: str) -> None:
    async with http_client(router_url) as client:
        unknown = await _error(client, "basic_does_not_exist", {})
        for name, args in [("basic_explode", {"reason": "x"}), ("basic_snapshot", {})]:
            message = await _error(client, name, args)
            assert message == unknown.replace("basic_does_not_exist", name)
        # the original name of a renamed tool is not exposed either
        message = await _error(client, "basic_whoami", {})
        assert message == unknown.replace("basic_does_not_exist", "basic_whoami")


async def test_renamed_tool_reaches_the_backend_under_its_original_name(router_url: str) -> None:
    async with http_client(router_url) as client:
        result = await client.call_tool("basic_identify", {})
        assert not result.is_error
        assert result.content[0].text == "shaped"  # type: ignore[union-attr]
        info = await client.call_tool("router_get_routing_info", {"tool_name": "basic_identify"})
        assert info.structured_content is not None
        assert info.structured_content["original_name"] == "whoami"
        stats = await client.call_tool("basic_stats", {"values": [1, 2]})
        assert stats.structured_content == {"count": 2, "total": 3.0, "labels": ["x", "x"]}
