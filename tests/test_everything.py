"""The router in front of the reference server, @modelcontextprotocol/server-everything.

Every combination of backend transport (stdio child, streamable HTTP) and front (the router's
stdio and its streamable HTTP endpoint, each in the handshake era and the stateless 2026-07-28
era) is driven by a real MCP client. Each test compares what the client sees through the router
with what a direct connection to server-everything returns in the same test, with the same client
capabilities (none declared, as the router's own backend client declares none).
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from support import (
    EVERYTHING,
    MANAGEMENT_TOOLS,
    child_env,
    free_port,
    router_stdio,
    run_router,
    spawn,
    write_config,
)

pytestmark = [
    pytest.mark.timeout(60),  # a guard for overloaded machines only: each test takes seconds
    pytest.mark.skipif(
        not EVERYTHING.exists(), reason="run `npm ci` for server-everything (package.json)"
    ),
]

NS = "everything"
MODERN = "2026-07-28"
FRONTS = [("stdio", "legacy"), ("stdio", MODERN), ("http", "legacy"), ("http", MODERN)]
FRONT_IDS = [f"{t}-front-{m}" for t, m in FRONTS]
# Added by the MCP server layer on 2026-07-28 results; not part of the backend's answer.
SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"
# Registered by server-everything only after `initialized`, and announced with a
# tools/list_changed that is lost over HTTP: the router must still list it.
POST_INIT_TOOL = "simulate-research-query"
CAPABILITIES_NOTE = (
    "server-everything lists get-roots-list / trigger-sampling-* / trigger-*elicitation* only "
    "to clients declaring roots / sampling / elicitation. The routed client here declares none, "
    "so the router serves it from a backend session that declares none "
    "(backends/capabilities.py), and the direct client declares none either."
)


@dataclass
class Setup:
    """One backend transport: how to reach server-everything directly, and a router before it."""

    kind: str
    direct: StdioServerParameters | str
    config: Path
    router_url: str


@pytest.fixture(scope="module")
def everything_http_url() -> Iterator[str]:
    """server-everything in streamableHttp mode on a free port (reached only via 127.0.0.1)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with spawn(
        [str(EVERYTHING), "streamableHttp"],
        env=child_env(PORT=str(port)),
        ready_url=url,
        timeout=40,
    ):
        yield url


@pytest.fixture(scope="module", params=["stdio", "http"], ids=["stdio-backend", "http-backend"])
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    """server-everything as a stdio child of the router, or over streamable HTTP."""
    kind: str = request.param
    direct: StdioServerParameters | str
    if kind == "stdio":
        backend: dict[str, Any] = {"name": NS, "command": str(EVERYTHING), "args": ["stdio"]}
        direct = StdioServerParameters(command=str(EVERYTHING), args=["stdio"])
    else:
        direct = request.getfixturevalue("everything_http_url")
        backend = {"name": NS, "url": direct}
    config = write_config(
        tmp_path_factory.mktemp(f"everything-{kind}") / "backends.yaml", [backend]
    )
    with run_router(config, timeout=40) as router:
        yield Setup(kind, direct, config, router.url)


@dataclass
class Pair:
    """A client through the router and a client straight to server-everything."""

    routed: Client
    direct: Client


@pytest.fixture(params=FRONTS, ids=FRONT_IDS)
def front(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The router's front transport and the client's protocol era."""
    return request.param  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def connect(setup: Setup, front: tuple[str, str]) -> AsyncIterator[Pair]:
    """Open a client through the router (its stdio or HTTP front) and one direct client."""
    transport, mode = front
    routed = (
        router_stdio(setup.config, mode=mode)
        if transport == "stdio"
        else Client(setup.router_url, mode=mode)
    )
    # server-everything speaks only the handshake era ("auto" would fall back to it anyway).
    # Neither client declares sampling, elicitation or roots: the router serves the routed one
    # from a backend session that declares none, so both see the same catalog.
    direct = Client(setup.direct, mode="legacy")
    async with routed as routed_client, direct as direct_client:
        assert routed_client.protocol_version == (MODERN if mode == MODERN else "2025-11-25")
        yield Pair(routed_client, direct_client)


def exposed_uri(uri: str) -> str:
    """``demo://resource/x`` as the router exposes it: ``demo://everything/resource/x``."""
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://{NS}/{rest}"


def dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def backend_meta(meta: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (meta or {}).items() if k != SERVER_INFO_META}


def assert_same_result(routed: types.CallToolResult, direct: types.CallToolResult) -> None:
    assert [dump(c) for c in routed.content] == [dump(c) for c in direct.content]
    assert routed.structured_content == direct.structured_content
    assert routed.is_error == direct.is_error
    assert backend_meta(routed.meta) == backend_meta(direct.meta)


async def tool_list_is_the_direct_list_with_namespace_prefix(pair: Pair, era: str) -> None:
    routed = (await pair.routed.list_tools()).tools
    direct = (await pair.direct.list_tools()).tools
    assert POST_INIT_TOOL in {t.name for t in direct}

    routed_names = [t.name for t in routed]
    assert f"{NS}_{POST_INIT_TOOL}" in routed_names, "catalog taken before `initialized` settled"
    # Besides the router's own management tools, exactly the backend's tools, prefixed.
    own = {n for n in routed_names if n.startswith("router_")}
    assert own >= MANAGEMENT_TOOLS
    assert sorted(n for n in routed_names if n not in own) == sorted(
        f"{NS}_{t.name}" for t in direct
    ), CAPABILITIES_NOTE
    # Every definition (input/output schema, title, description, annotations, execution,
    # _meta) is the backend's own, verbatim but for the name.
    by_name = {t.name: t for t in routed}
    for tool in direct:
        seen = dump(by_name[f"{NS}_{tool.name}"])
        assert seen.pop("name") == f"{NS}_{tool.name}"
        expected = dump(tool)
        expected.pop("name")
        if era == MODERN:
            # `execution` (tasks) exists only up to 2025-11-25; the SDK drops it on the
            # 2026-07-28 wire, as the spec says.
            expected.pop("execution", None)
        assert seen["inputSchema"] == tool.input_schema
        assert seen == expected, tool.name


async def echo_sum_structured_and_image_calls_return_what_direct_calls_return(pair: Pair) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("echo", {"message": "héllo, router"}),
        ("get-sum", {"a": 2, "b": 40.5}),
        ("get-structured-content", {"location": "Chicago"}),
        ("get-tiny-image", {}),
    ]
    for name, args in calls:
        direct = await pair.direct.call_tool(name, args)
        routed = await pair.routed.call_tool(f"{NS}_{name}", args)
        assert_same_result(routed, direct)

    echo = await pair.routed.call_tool(f"{NS}_echo", {"message": "hi"})
    assert echo.content[0].text == "Echo: hi"  # type: ignore[union-attr]
    total = await pair.routed.call_tool(f"{NS}_get-sum", {"a": 2, "b": 3})
    assert total.content[0].text == "The sum of 2 and 3 is 5."  # type: ignore[union-attr]
    weather = await pair.routed.call_tool(f"{NS}_get-structured-content", {"location": "Chicago"})
    assert weather.structured_content == {
        "temperature": 36,
        "conditions": "Light rain / drizzle",
        "humidity": 82,
    }
    image = await pair.routed.call_tool(f"{NS}_get-tiny-image", {})
    images = [c for c in image.content if isinstance(c, types.ImageContent)]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data).startswith(b"\x89PNG")


async def resources_templates_and_reads_match_direct(pair: Pair) -> None:
    routed = (await pair.routed.list_resources()).resources
    direct = (await pair.direct.list_resources()).resources
    assert direct, "server-everything lists its static documents"
    expected = []
    for res in direct:
        d = dump(res)
        d["uri"] = exposed_uri(res.uri)
        expected.append(d)
    assert sorted((dump(r) for r in routed), key=lambda d: d["uri"]) == sorted(
        expected, key=lambda d: d["uri"]
    )

    routed_tpl = (await pair.routed.list_resource_templates()).resource_templates
    direct_tpl = (await pair.direct.list_resource_templates()).resource_templates
    expected_tpl = []
    for tpl in direct_tpl:
        d = dump(tpl)
        d["uriTemplate"] = exposed_uri(tpl.uri_template)
        expected_tpl.append(d)
    assert [dump(t) for t in routed_tpl] == expected_tpl

    # A static resource: byte-for-byte the same text.
    static = "demo://resource/static/document/features.md"
    assert static in {r.uri for r in direct}
    d_read = await pair.direct.read_resource(static)
    r_read = await pair.routed.read_resource(exposed_uri(static))
    assert len(r_read.contents) == len(d_read.contents) == 1
    d_item, r_item = d_read.contents[0], r_read.contents[0]
    assert isinstance(d_item, types.TextResourceContents)
    assert isinstance(r_item, types.TextResourceContents)
    assert r_item.text == d_item.text and r_item.text
    assert r_item.mime_type == d_item.mime_type
    assert r_item.uri == exposed_uri(static)

    # Instances of both templates (never listed): text and base64 blob. Their text carries
    # the time of the read, so compare up to it.
    created = re.compile(r" created at .*$")
    for kind in ("text", "blob"):
        uri = f"demo://resource/dynamic/{kind}/7"
        d_read = await pair.direct.read_resource(uri)
        r_read = await pair.routed.read_resource(exposed_uri(uri))
        assert len(r_read.contents) == len(d_read.contents) == 1
        d_item, r_item = d_read.contents[0], r_read.contents[0]
        assert type(r_item) is type(d_item), kind
        assert r_item.mime_type == d_item.mime_type
        if isinstance(d_item, types.BlobResourceContents):
            assert isinstance(r_item, types.BlobResourceContents)
            d_text = base64.b64decode(d_item.blob).decode()
            r_text = base64.b64decode(r_item.blob).decode()
        else:
            assert isinstance(d_item, types.TextResourceContents)
            assert isinstance(r_item, types.TextResourceContents)
            d_text, r_text = d_item.text, r_item.text
        assert r_text.startswith("Resource 7: This is a ")
        assert created.sub("", r_text) == created.sub("", d_text)


async def prompts_list_and_get_with_arguments_match_direct(pair: Pair) -> None:
    routed = (await pair.routed.list_prompts()).prompts
    direct = (await pair.direct.list_prompts()).prompts
    expected = []
    for prompt in direct:
        d = dump(prompt)
        d["name"] = f"{NS}_{prompt.name}"
        expected.append(d)
    assert [dump(p) for p in routed] == expected

    args = {"city": "Springfield", "state": "Illinois"}
    d_got = await pair.direct.get_prompt("args-prompt", args)
    r_got = await pair.routed.get_prompt(f"{NS}_args-prompt", args)
    assert [dump(m) for m in r_got.messages] == [dump(m) for m in d_got.messages]
    assert r_got.description == d_got.description
    assert r_got.messages[0].content.text == (  # type: ignore[union-attr]
        "What's weather in Springfield, Illinois?"
    )


async def test_tools_through_router_list_and_answer_exactly_like_direct_server_everything(
    setup: Setup, front: tuple[str, str]
) -> None:
    """Same tools (schemas verbatim); echo/get-sum/structured/image calls give the same results."""
    async with connect(setup, front) as pair:
        await tool_list_is_the_direct_list_with_namespace_prefix(pair, era=front[1])
        await echo_sum_structured_and_image_calls_return_what_direct_calls_return(pair)


async def test_resources_and_prompts_through_router_match_direct_server_everything(
    setup: Setup, front: tuple[str, str]
) -> None:
    """Same resources and templates (URIs namespaced), same reads, same prompts and renderings."""
    async with connect(setup, front) as pair:
        await resources_templates_and_reads_match_direct(pair)
        await prompts_list_and_get_with_arguments_match_direct(pair)
