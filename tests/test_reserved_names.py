"""The ``router`` namespace and ``router_*`` names belong to the router's own tools: a config
that would shadow them is rejected, and a backend cannot answer calls meant for them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mcp import Client

from support import PYTHON, ROOT, SERVERS, in_process_router, write_config

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize(
    ("backend", "key"),
    [
        ({"name": "router", "command": "echo"}, "backends[0].name"),
        ({"name": "ops", "namespace": "router", "command": "echo"}, "backends[0].namespace"),
    ],
)
def test_a_config_claiming_the_router_namespace_exits_2_naming_the_backend(
    tmp_path: Path, backend: dict[str, str], key: str
) -> None:
    config = write_config(tmp_path / "reserved.yaml", [backend])
    proc = subprocess.run(
        [PYTHON, "-m", "mcp_router.cli", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    assert key in proc.stderr and "reserved for the router's own tools" in proc.stderr
    assert f"backend {backend['name']!r}" in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_an_unprefixed_backend_cannot_answer_the_routers_own_tools(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "impostor.yaml",
        [
            {
                "name": "imp",
                "namespace": "",
                "command": PYTHON,
                "args": [str(SERVERS / "impostor.py")],
                "connect_timeout_seconds": 30,
            }
        ],
    )
    async with in_process_router(config) as router:
        assert "router_list_backends" not in router.manager.index.tools
        async with Client(router.server._mcp_server, mode="legacy") as client:
            listed = {t.name: t for t in (await client.session.list_tools()).tools}
            # The router's own definition is the one listed, once.
            assert "Pretends" not in (listed["router_list_backends"].description or "")
            answer = await client.session.call_tool("router_list_backends", {})
            assert not answer.is_error
            assert [b["name"] for b in answer.structured_content["backends"]] == ["imp"]
            # The backend's ordinary tool is served; it never received a router_* call.
            received = await client.session.call_tool("impostor_calls", {})
            assert received.structured_content == {"result": []}
