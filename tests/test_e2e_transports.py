"""End to end: every backend transport x every front transport x both protocol eras.

One router config holds tests/servers/basic.py three times: over stdio (a child of the router),
over streamable HTTP and over SSE, each started with its own ``--name``. The router is then run
with each front transport (stdio, streamable HTTP, SSE) and driven by a real MCP client in the
handshake era (2025-11-25) and the stateless era (2026-07-28); through each, every backend is
listed and answers a call.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from unittest.mock import ANY

import pytest
from mcp import Client
from mcp.client.sse import sse_client

from support import (
    MANAGEMENT_TOOLS,
    PYTHON,
    RouterProcess,
    fastmcp_server,
    http_client,
    router_stdio,
)
from support import write_config as write_backends

# the test itself is bounded; shared processes are bounded by their own start/stop timeouts
pytestmark = pytest.mark.timeout(30, func_only=True)

ERA_VERSIONS = {"legacy": "2025-11-25", "2026-07-28": "2026-07-28"}
# backend name (= namespace) -> the --name it was started with
BACKENDS = {"stdio": "over-stdio", "http": "over-http", "sse": "over-sse"}


@pytest.fixture(scope="module")
def backend_urls(start_server: Callable[..., str]) -> dict[str, str]:
    """The HTTP and SSE backends (the stdio one is started by the router itself)."""
    return {
        "http": start_server("basic", "http", name=BACKENDS["http"]),
        "sse": start_server("basic", "sse", name=BACKENDS["sse"]),
    }


@pytest.fixture(scope="module")
def config(backend_urls: dict[str, str], module_tmp: Path) -> Path:
    """One router config with a stdio, a streamable HTTP and an SSE backend."""
    assert backend_urls["http"].endswith("/mcp") and backend_urls["sse"].endswith("/sse")
    stdio = [*fastmcp_server("basic", "stdio"), "--name", BACKENDS["stdio"]]
    return write_backends(
        module_tmp / "three-transports.yaml",
        [
            {"name": "stdio", "command": PYTHON, "args": stdio[1:]},
            {"name": "http", "url": backend_urls["http"]},
            {"name": "sse", "url": backend_urls["sse"]},
        ],
    )


@pytest.fixture(scope="module")
def http_front(config: Path, start_router: Callable[..., RouterProcess]) -> str:
    """The router over streamable HTTP: its /mcp URL."""
    return start_router(config, "http").url


@pytest.fixture(scope="module")
def sse_front(config: Path, start_router: Callable[..., RouterProcess]) -> str:
    """The router over legacy SSE: its /sse URL."""
    return start_router(config, "sse").url


@contextlib.asynccontextmanager
async def front_client(
    request: pytest.FixtureRequest, front: str, era: str
) -> AsyncIterator[Client]:
    """A client of the router over ``front`` in protocol era ``era``."""
    if front == "stdio":
        async with router_stdio(request.getfixturevalue("config"), mode=era) as client:
            yield client
    elif front == "http":
        async with http_client(request.getfixturevalue("http_front"), mode=era) as client:
            yield client
    else:
        # any async context manager yielding (read, write) streams is a Transport for Client
        transport = sse_client(request.getfixturevalue("sse_front"))
        async with Client(transport, mode=era) as client:
            yield client


@pytest.mark.parametrize("era", list(ERA_VERSIONS))
@pytest.mark.parametrize("front", ["stdio", "http", "sse"])
async def test_every_backend_transport_is_reachable_through_the_front(
    request: pytest.FixtureRequest, backend_urls: dict[str, str], front: str, era: str
) -> None:
    async with http_client(backend_urls["http"]) as direct:
        basic_tools = {t.name for t in (await direct.session.list_tools()).tools}
    assert "whoami" in basic_tools

    async with front_client(request, front, era) as router:
        assert router.protocol_version == ERA_VERSIONS[era]
        tools = {t.name for t in (await router.session.list_tools()).tools}
        assert (
            tools == {f"{ns}_{name}" for ns in BACKENDS for name in basic_tools} | MANAGEMENT_TOOLS
        )

        for ns, instance in BACKENDS.items():
            answer = await router.session.call_tool(f"{ns}_whoami", {})
            assert answer.is_error is False
            assert answer.structured_content == {"result": instance}, ns
            # the router really serves the era: 2026-07-28 results carry its serverInfo stamp
            stamp = (answer.meta or {}).get("io.modelcontextprotocol/serverInfo")
            assert stamp == (None if era == "legacy" else {"name": "mcp-router", "version": ANY})

        stats = await router.session.call_tool("sse_stats", {"values": [2, 3]})
        assert stats.structured_content == {"count": 2, "total": 5.0, "labels": ["x", "x"]}
        item = await router.session.read_resource("basic://stdio/items/9")
        assert getattr(item.contents[0], "text", "") == '{"id": "9", "owner": "over-stdio"}'


async def test_router_connects_each_backend_over_its_configured_transport(
    http_front: str,
) -> None:
    async with http_client(http_front) as router:
        listed = await router.session.call_tool("router_list_backends", {})
    assert listed.structured_content is not None
    backends = {b["name"]: b for b in listed.structured_content["backends"]}
    assert {name: b["transport"] for name, b in backends.items()} == {
        "stdio": "stdio",
        "http": "http",
        "sse": "sse",
    }
    assert all(b["healthy"] for b in backends.values()), backends
