"""Every way of calling a tool goes through the one call entry: ``router_call_tool`` (search
discovery mode) relays sampling to its caller and honours ``session_mode: per_client``
exactly like a call by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client

from support import EVERYTHING, in_process_router, write_config
from test_faults import call, stdio_backend

pytestmark = pytest.mark.timeout(120)

SEARCH = {"tool_discovery": "search"}


def _sampler(answer: str) -> Any:
    async def sample(_context: Any, params: types.CreateMessageRequestParams) -> Any:
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=answer),
            model="test-model",
        )

    return sample


def _text(result: types.CallToolResult) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.skipif(not EVERYTHING.exists(), reason="npm ci installs server-everything")
async def test_router_call_tool_relays_server_everythings_sampling_to_its_caller(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "search.yaml",
        [{"name": "every", "command": str(EVERYTHING), "args": ["stdio"]}],
        SEARCH,
    )
    async with in_process_router(config) as router:
        server = router.server._mcp_server
        async with Client(server, mode="legacy", sampling_callback=_sampler("sampled-A")) as a:
            await a.session.list_tools()  # as clients do: its catalog is its capabilities'
            by_search = await a.session.call_tool(
                "router_call_tool",
                {"name": "every_trigger-sampling-request", "arguments": {"prompt": "hi"}},
            )
            assert not by_search.is_error, _text(by_search)
            assert "sampled-A" in _text(by_search)
            by_name = await a.session.call_tool("every_trigger-sampling-request", {"prompt": "hi"})
            assert not by_name.is_error and "sampled-A" in _text(by_name)


async def test_router_call_tool_uses_each_clients_own_session_in_per_client_mode(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "per_client.yaml", [stdio_backend("solo", session_mode="per_client")], SEARCH
    )
    async with in_process_router(config) as router:
        server = router.server._mcp_server
        async with Client(server, mode="legacy") as a, Client(server, mode="legacy") as b:
            pids = []
            for client in (a, b):
                result = await client.session.call_tool(
                    "router_call_tool", {"name": "solo_work", "arguments": {"x": 1}}
                )
                assert not result.is_error, _text(result)
                pids.append(result.structured_content["pid"])
            direct = await call(a, "solo_work", x=2)
            assert pids[0] != pids[1]  # two clients, two backend sessions (processes)
            assert direct.data["pid"] == pids[0]  # by name or by router_call_tool: one session
