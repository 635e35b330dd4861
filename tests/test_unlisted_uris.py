"""Only URIs a backend offered reach it: listed resources and instances of its templates.
Any other URI in its namespace is refused by the router unless the backend opts in."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

from support import PYTHON, SERVERS, in_process_router, write_config

pytestmark = pytest.mark.timeout(90)


def _config(tmp_path: Path, **extra: Any) -> Path:
    backend = {
        "name": "b",
        "command": PYTHON,
        "args": [str(SERVERS / "basic.py"), "--name", "b"],
        "connect_timeout_seconds": 30,
        **extra,
    }
    return write_config(tmp_path / "uris.yaml", [backend])


async def test_a_uri_neither_listed_nor_matching_a_template_never_reaches_the_backend(
    tmp_path: Path,
) -> None:
    async with in_process_router(_config(tmp_path)) as router:
        routed: list[str] = []
        router.forwarder.observers.append(lambda record: routed.append(record.exposed))
        async with Client(router.server._mcp_server, mode="legacy") as client:
            item = await client.session.read_resource("basic://b/items/7")  # a template instance
            assert '"id": "7"' in item.contents[0].text
            for uri in ("basic://b/../../etc/passwd", "http://b/169.254.169.254/latest"):
                with pytest.raises(MCPError) as raised:
                    await client.session.read_resource(uri)
                assert raised.value.error.code == -32602
                assert raised.value.error.data == {"uri": uri}
        assert routed == ["basic://b/items/7"]  # the refused URIs were never forwarded


async def test_a_backend_that_opts_in_receives_unlisted_uris_of_its_namespace(
    tmp_path: Path,
) -> None:
    async with in_process_router(_config(tmp_path, allow_unlisted_uris=True)) as router:
        routed: list[str] = []
        router.forwarder.observers.append(lambda record: routed.append(record.exposed))
        async with Client(router.server._mcp_server, mode="legacy") as client:
            with pytest.raises(MCPError) as raised:
                await client.session.read_resource("basic://b/not-there")
            # the backend's own answer, its URI given in exposed form
            assert raised.value.error.code == -32602
            assert raised.value.error.data in ({"uri": "basic://b/not-there"}, None)
        assert routed == ["basic://b/not-there"]


async def test_a_backends_own_resource_error_reaches_the_client_as_it_sent_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pass-through (``namespace: ""``): the backend's -32602 with ``data.uri`` (SEP-2164),
    code, message and data equal to a direct connection; no ERROR or traceback is logged for
    the client's mistake."""
    uri = "basic://no-such-resource"
    direct_params = StdioServerParameters(command=PYTHON, args=[str(SERVERS / "basic.py")])
    async with Client(direct_params, mode="legacy") as direct:
        with pytest.raises(MCPError) as expected:
            await direct.session.read_resource(uri)
    config = _config(tmp_path, namespace="", allow_unlisted_uris=True)
    async with (
        in_process_router(config) as router,
        Client(router.server._mcp_server, mode="legacy") as client,
    ):
        caplog.clear()
        with pytest.raises(MCPError) as got:
            await client.session.read_resource(uri)
    assert got.value.error.code == expected.value.error.code == -32602
    assert got.value.error.message == expected.value.error.message
    assert got.value.error.data == expected.value.error.data == {"uri": uri}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
