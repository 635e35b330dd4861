"""End to end: the router in front of real backends, driven by a real MCP client.

Two instances of tests/servers/basic.py sit behind one router: ``a`` over stdio (``--name alpha``)
and ``b`` over streamable HTTP (``--name beta``). Expected answers are taken from a direct
connection to the same backend ``b`` process, so the tests show the router adds nothing and
loses nothing but the namespace.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from support import (
    MANAGEMENT_TOOLS,
    PYTHON,
    RouterProcess,
    child_env,
    fastmcp_server,
    free_port,
    http_client,
    router_stdio,
    run_router,
)
from support import write_config as write_backends

# the test itself is bounded; shared processes are bounded by their own start/stop timeouts
pytestmark = pytest.mark.timeout(30, func_only=True)

ERAS = ["legacy", "2026-07-28"]
SERVER_INFO = "io.modelcontextprotocol/serverInfo"
ALPHA_STDIO = [*fastmcp_server("basic", "stdio"), "--name", "alpha"]


# ------------------------------------------------------------------------------- helpers


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as it goes on the wire."""
    return model.model_dump(by_alias=True, exclude_none=True)


def without_server_info(result: dict[str, Any]) -> dict[str, Any]:
    """The result minus the ``_meta`` key that FastMCP stamps on 2026-07-28 results.

    Every FastMCP server (the router too) writes its own name and version under
    ``_meta["io.modelcontextprotocol/serverInfo"]``; through the router that key names the
    router, not the backend. Only that key is removed; any other ``_meta`` must match.
    """
    result = dict(result)
    meta = dict(result.get("_meta") or {})
    meta.pop(SERVER_INFO, None)
    if meta:
        result["_meta"] = meta
    else:
        result.pop("_meta", None)
    return result


def ns_uri(uri: str, namespace: str) -> str:
    """``scheme://rest`` as the router exposes it for ``namespace``: ``scheme://namespace/rest``."""
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://{namespace}/{rest}"


def renamed(definition: dict[str, Any], **fields: str) -> dict[str, Any]:
    return {**definition, **fields}


async def error_text(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    """The error a client sees for a tool call: an isError result or a JSON-RPC error."""
    try:
        result = await client.session.call_tool(tool, arguments)
    except MCPError as exc:
        return exc.error.message
    assert result.is_error, f"{tool} did not fail: {dump(result)}"
    return " ".join(getattr(block, "text", "") for block in result.content)


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def beta_url(start_server: Callable[..., str]) -> str:
    """Backend ``b``: basic.py over streamable HTTP, named beta."""
    return start_server("basic", "http", name="beta")


@pytest.fixture(scope="module")
def router_url(beta_url: str, module_tmp: Path, start_router: Callable[..., RouterProcess]) -> str:
    """A router over streamable HTTP in front of ``a`` (stdio, alpha) and ``b`` (http, beta)."""
    config = write_backends(
        module_tmp / "two-basics.yaml",
        [
            {"name": "a", "command": PYTHON, "args": ALPHA_STDIO[1:]},
            {"name": "b", "url": beta_url},
        ],
    )
    return start_router(config).url


@pytest.fixture(params=ERAS)
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass(frozen=True)
class Pair:
    """Where to reach the router and backend b directly, and in which protocol era."""

    router_url: str
    beta_url: str
    era: str


@pytest.fixture
def pair(router_url: str, beta_url: str, era: str) -> Pair:
    return Pair(router_url, beta_url, era)


@contextlib.asynccontextmanager
async def connect(pair: Pair) -> AsyncIterator[tuple[Client, Client]]:
    """(client of the router, client of backend b directly), both in the same protocol era.

    A context manager rather than an async fixture: the SDK client's cancel scopes must be
    entered and left in the same task.
    """
    async with (
        http_client(pair.router_url, mode=pair.era) as router,
        http_client(pair.beta_url, mode=pair.era) as direct,
    ):
        yield router, direct


# ------------------------------------------------------------------------------- catalog


async def test_router_lists_every_backend_component_under_its_namespace_plus_management_tools(
    pair: Pair,
) -> None:
    async with connect(pair) as (router, direct):
        direct_tools = [t.name for t in (await direct.session.list_tools()).tools]
        assert {"create_order", "stats", "lookup", "explode", "snapshot", "whoami"} <= set(
            direct_tools
        )

        tools = [t.name for t in (await router.session.list_tools()).tools]
        assert len(tools) == len(set(tools)), f"duplicate tool names: {tools}"
        expected = {f"{ns}_{name}" for ns in ("a", "b") for name in direct_tools} | MANAGEMENT_TOOLS
        assert set(tools) == expected

        direct_prompts = [p.name for p in (await direct.session.list_prompts()).prompts]
        prompts = [p.name for p in (await router.session.list_prompts()).prompts]
        assert sorted(prompts) == sorted(
            f"{ns}_{name}" for ns in ("a", "b") for name in direct_prompts
        )

        direct_uris = [str(r.uri) for r in (await direct.session.list_resources()).resources]
        uris = [str(r.uri) for r in (await router.session.list_resources()).resources]
        assert sorted(uris) == sorted(ns_uri(u, ns) for ns in ("a", "b") for u in direct_uris)
        assert "basic://a/readme" in uris and "basic://b/logo.png" in uris

        direct_templates = [
            t.uri_template
            for t in (await direct.session.list_resource_templates()).resource_templates
        ]
        templates = [
            t.uri_template
            for t in (await router.session.list_resource_templates()).resource_templates
        ]
        assert sorted(templates) == sorted(
            ns_uri(u, ns) for ns in ("a", "b") for u in direct_templates
        )
        assert "basic://b/items/{id}" in templates


async def test_tool_definitions_pass_through_unchanged_but_for_the_name(
    pair: Pair,
) -> None:
    async with connect(pair) as (router, direct):
        exposed = {t.name: dump(t) for t in (await router.session.list_tools()).tools}
        direct_tools = {t.name: dump(t) for t in (await direct.session.list_tools()).tools}

        order = direct_tools["create_order"]["inputSchema"]
        # the fidelity cases really are on the wire, so the comparison below means something
        assert order["$schema"].startswith("https://json-schema.org/")
        assert order["properties"]["shipping"]["properties"]["address"] == {
            "$ref": "#/$defs/Address"
        }
        assert order["additionalProperties"] is False
        assert "outputSchema" in direct_tools["stats"]
        assert direct_tools["lookup"]["annotations"]["readOnlyHint"] is True
        assert direct_tools["lookup"]["_meta"]["example.com/owner"] == "team-a"

        for name, definition in direct_tools.items():
            for ns in ("a", "b"):
                # inputSchema, outputSchema, title, annotations, description, _meta, icons...
                assert renamed(exposed[f"{ns}_{name}"], name=name) == definition, f"{ns}_{name}"


async def test_resource_template_and_prompt_definitions_pass_through_unchanged(
    pair: Pair,
) -> None:
    async with connect(pair) as (router, direct):
        exposed_resources = {
            str(r.uri): dump(r) for r in (await router.session.list_resources()).resources
        }
        for resource in (await direct.session.list_resources()).resources:
            uri = ns_uri(str(resource.uri), "b")
            assert renamed(exposed_resources[uri], uri=str(resource.uri)) == dump(resource)

        exposed_templates = {
            t.uri_template: dump(t)
            for t in (await router.session.list_resource_templates()).resource_templates
        }
        for template in (await direct.session.list_resource_templates()).resource_templates:
            uri = ns_uri(template.uri_template, "b")
            assert renamed(exposed_templates[uri], uriTemplate=template.uri_template) == dump(
                template
            )

        exposed_prompts = {p.name: dump(p) for p in (await router.session.list_prompts()).prompts}
        for prompt in (await direct.session.list_prompts()).prompts:
            assert renamed(exposed_prompts[f"b_{prompt.name}"], name=prompt.name) == dump(prompt)


# ------------------------------------------------------------------------------- calls

CALLS: list[tuple[str, dict[str, Any]]] = [
    (
        "create_order",
        {
            "item": "tea",
            "quantity": 2,
            "priority": "high",
            "shipping": {"address": {"street": "1 rue X", "country": "FR"}, "express": True},
        },
    ),
    ("stats", {"values": [1.5, 2.5], "label": "n"}),
    ("lookup", {"key": "k1"}),
    ("explode", {"reason": "on purpose"}),
    ("snapshot", {}),
    ("whoami", {}),
]


@pytest.mark.parametrize(("tool", "arguments"), CALLS, ids=[c[0] for c in CALLS])
async def test_tool_call_through_router_returns_exactly_what_the_backend_returns(
    pair: Pair, tool: str, arguments: dict[str, Any]
) -> None:
    async with connect(pair) as (router, direct):
        expected = dump(await direct.session.call_tool(tool, arguments))
        got = dump(await router.session.call_tool(f"b_{tool}", arguments))
        assert without_server_info(got) == without_server_info(expected)


async def test_call_results_keep_structured_content_errors_images_and_meta(
    pair: Pair,
) -> None:
    async with connect(pair) as (router, _):
        stats = await router.session.call_tool("b_stats", {"values": [1, 2, 3]})
        assert stats.structured_content == {"count": 3, "total": 6.0, "labels": ["x", "x", "x"]}
        assert stats.is_error is False

        failed = await router.session.call_tool("b_explode", {"reason": "boom"})
        assert failed.is_error is True
        assert [getattr(c, "text", None) for c in failed.content] == ["exploded: boom"]

        snap = await router.session.call_tool("b_snapshot", {})
        assert [c.type for c in snap.content] == ["image", "text"]
        assert getattr(snap.content[0], "mime_type", None) == "image/png"

        looked = await router.session.call_tool("b_lookup", {"key": "z"})
        assert (looked.meta or {}).get("example.com/trace") == "t-z"


@pytest.mark.parametrize("uri", ["basic://readme", "basic://logo.png", "basic://items/42"])
async def test_resource_read_through_router_returns_what_the_backend_returns(
    pair: Pair, uri: str
) -> None:
    async with connect(pair) as (router, direct):
        expected = without_server_info(dump(await direct.session.read_resource(uri)))
        got = without_server_info(dump(await router.session.read_resource(ns_uri(uri, "b"))))
        # the contents name the URI the client asked for
        assert [c["uri"] for c in got["contents"]] == [ns_uri(uri, "b")]
        for content in got["contents"]:
            content["uri"] = uri
        assert got == expected
        assert "text" in got["contents"][0] or "blob" in got["contents"][0]


@pytest.mark.parametrize(
    ("prompt", "arguments"),
    [("greet", {"who": "Ada"}), ("review", {"code": "x = 1", "language": "rust"})],
)
async def test_prompt_get_through_router_returns_what_the_backend_returns(
    pair: Pair, prompt: str, arguments: dict[str, str]
) -> None:
    async with connect(pair) as (router, direct):
        expected = without_server_info(dump(await direct.session.get_prompt(prompt, arguments)))
        got = without_server_info(dump(await router.session.get_prompt(f"b_{prompt}", arguments)))
        assert got == expected
        assert expected["messages"], "the prompt rendered no messages"


async def test_two_instances_of_the_same_server_are_both_reachable(
    pair: Pair,
) -> None:
    async with connect(pair) as (router, _):
        alpha = await router.session.call_tool("a_whoami", {})
        beta = await router.session.call_tool("b_whoami", {})
        assert alpha.structured_content == {"result": "alpha"}
        assert beta.structured_content == {"result": "beta"}

        for ns, name in (("a", "alpha"), ("b", "beta")):
            item = await router.session.read_resource(f"basic://{ns}/items/7")
            assert getattr(item.contents[0], "text", "") == f'{{"id": "7", "owner": "{name}"}}'
            readme = await router.session.read_resource(f"basic://{ns}/readme")
            assert getattr(readme.contents[0], "text", "") == f"# basic ({name})\n"
            greeting = await router.session.get_prompt(f"{ns}_greet", {"who": name})
            assert name in getattr(greeting.messages[0].content, "text", "")


async def test_unknown_tool_gives_an_error_naming_it(pair: Pair) -> None:
    async with connect(pair) as (router, _):
        for name in ("b_no_such_tool", "no_such_tool", "zz_whoami"):
            assert name in await error_text(router, name, {})


@pytest.mark.parametrize("uri", ["nope://x/y", "basic://zz/readme"])
async def test_unknown_resource_gives_an_error_naming_it(pair: Pair, uri: str) -> None:
    async with connect(pair) as (router, _):
        with pytest.raises(MCPError) as raised:
            await router.session.read_resource(uri)
        assert uri in raised.value.error.message


async def test_unknown_resource_of_a_known_backend_gives_an_error_naming_the_exposed_uri(
    pair: Pair,
) -> None:
    async with connect(pair) as (router, _):
        with pytest.raises(MCPError) as raised:
            await router.session.read_resource("basic://b/missing")
        assert "basic://b/missing" in raised.value.error.message


# ------------------------------------------------------------------------------- degraded start


async def test_backends_down_at_startup_do_not_stop_the_router(
    beta_url: str, tmp_path: Path
) -> None:
    dead_port = free_port()  # nobody listens there
    # start-up waits up to the longest connect_timeout_seconds for backends not yet up (10 s by
    # default); 5 s keeps this test short and still lets "up" connect on a busy machine
    config = write_backends(
        tmp_path / "degraded.yaml",
        [
            {"name": "up", "url": beta_url, "connect_timeout_seconds": 5},
            {
                "name": "gone",
                "url": f"http://127.0.0.1:{dead_port}/mcp",
                "connect_timeout_seconds": 5,
            },
            {
                "name": "crashes",
                "command": PYTHON,
                "args": ["-c", "import sys; sys.exit(3)"],
                "connect_timeout_seconds": 5,
            },
        ],
    )
    with run_router(config, tmp_path / "router.log") as front:
        async with http_client(front.url) as router:
            tools = {t.name for t in (await router.session.list_tools()).tools}
            assert "up_whoami" in tools
            assert not {t for t in tools if t.startswith(("gone_", "crashes_"))}
            answer = await router.session.call_tool("up_whoami", {})
            assert answer.structured_content == {"result": "beta"}

            listed = await router.session.call_tool("router_list_backends", {})
            assert listed.structured_content is not None
            backends = {b["name"]: b for b in listed.structured_content["backends"]}
    assert backends["up"]["healthy"] is True
    assert backends["up"]["last_error"] is None
    for name in ("gone", "crashes"):
        assert backends[name]["healthy"] is False, backends[name]
        assert backends[name]["last_error"], backends[name]
    assert backends["gone"]["transport"] == "http"
    assert backends["crashes"]["transport"] == "stdio"


# ------------------------------------------------------------------------------- default config


async def test_without_any_config_the_router_serves_the_bundled_demo_server(
    tmp_path: Path,
) -> None:
    from fastmcp import Client as FastMCPClient

    from mcp_router.template.server import create_server

    async with FastMCPClient(create_server()) as demo:
        demo_tools = [t.name for t in await demo.list_tools()]
    assert "echo" in demo_tools

    env = {k: v for k, v in child_env().items() if not k.startswith("MCP_")}  # no config via env
    assert not (tmp_path / "config" / "backends.yaml").exists()
    async with router_stdio(None, env=env, cwd=tmp_path) as router:
        tools = {t.name for t in (await router.session.list_tools()).tools}
        assert tools == {f"demo_{name}" for name in demo_tools} | MANAGEMENT_TOOLS
        echoed = await router.session.call_tool("demo_echo", {"text": "héllo"})
        assert [getattr(c, "text", None) for c in echoed.content] == ["héllo"]
        added = await router.session.call_tool("demo_add", {"a": 2, "b": 3.5})
        assert added.structured_content == {"result": 5.5}
        readme = await router.session.read_resource("demo://demo/readme")
        assert "mcp-server" in getattr(readme.contents[0], "text", "")
