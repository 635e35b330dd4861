"""Three router replicas behind HAProxy (round robin per request), sharing state in Redis.

Real processes only: Debian ``redis-server``, HAProxy (``tests/cluster.py``), three
``mcp-router --transport http`` replicas sharing one config, with the protocol test backend
(``tests/servers/protocol.py``) over streamable HTTP behind them, and the mcp SDK client.
Every response names the replica that served it (``X-Served-By``), so each test shows that
its requests really landed on different replicas.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from cluster import (
    HAPROXY,
    REDIS_SERVER,
    STATE_KEY,
    haproxy,
    port_of,
    redis_server,
    replica,
    replica_set,
)
from support import PYTHON, ROOT, child_env, router_cmd, wait_until, wait_until_async, write_config

pytestmark = [
    pytest.mark.xdist_group("replicas"),
    pytest.mark.skipif(not (REDIS_SERVER and HAPROXY), reason="needs redis-server and haproxy"),
    pytest.mark.timeout(240),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

NS = "proto"
WATCHED = "proto://watched"
WATCHED_EXPOSED = "proto://proto/watched"
PASSWORD = "redis-pass-4f1c9a7e2b"


class Cluster:
    """The replica set under test: its routers, HAProxy's URL, the Redis URL."""

    def __init__(self, routers: dict[str, Any], base: str, state_url: str) -> None:
        self.routers = routers
        self.base = base
        self.url = f"{base}/mcp"
        self.state_url = state_url


@pytest.fixture(scope="module")
def proto_url(start_server: Callable[..., str]) -> str:
    """The protocol backend over streamable HTTP, shared by every replica."""
    return start_server("protocol", "http")


@pytest.fixture(scope="module")
def config(proto_url: str, module_tmp: Path) -> Path:
    return write_config(module_tmp / "replicas.yaml", [{"name": NS, "url": proto_url}])


@pytest.fixture(scope="module")
def cluster(config: Path, module_tmp: Path) -> Iterator[Cluster]:
    with (
        redis_server(password=PASSWORD) as (state_url, _redis),
        replica_set(config, state_url, module_tmp) as routers,
        haproxy({name: port_of(r) for name, r in routers.items()}, module_tmp) as base,
    ):
        yield Cluster(routers, base, state_url)


class Served:
    """Records which replica served each HTTP request of a client (HAProxy's X-Served-By)."""

    def __init__(self) -> None:
        self.by: list[str] = []

    async def hook(self, response: httpx2.Response) -> None:
        name = response.headers.get("x-served-by")
        if name:
            self.by.append(name)

    def http(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            timeout=httpx2.Timeout(60.0, read=60.0), event_hooks={"response": [self.hook]}
        )


def client(url: str, served: Served, mode: str = "legacy", **callbacks: Any) -> Client:
    """An SDK client whose every request goes through HAProxy (and may land anywhere)."""
    transport = streamable_http_client(url, http_client=served.http())
    return Client(transport, mode=mode, **callbacks)


def text_of(result: types.CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


# ------------------------------------------------------------------------------- sessions


async def test_a_legacy_session_continues_on_every_replica(cluster: Cluster) -> None:
    served = Served()
    async with client(cluster.url, served) as mcp:
        sid_seen = set()
        for i in range(9):
            result = await mcp.call_tool(f"{NS}_progress", {"tag": f"t{i}", "steps": 1})
            assert not result.is_error, text_of(result)
        tools = await mcp.list_tools()
        assert f"{NS}_progress" in {t.name for t in tools.tools}
        sid_seen.add(len(served.by))
    # the initialize, the calls, the list and the DELETE went to all three replicas
    assert set(served.by) == {"r0", "r1", "r2"}, Counter(served.by)
