"""``subscriptions/listen`` through the router for a 2026-07-28 client (mcp SDK ``Client``,
``mode="auto"``, ``client.listen``), in front of ``tests/servers/protocol.py`` over stdio (a
session in the handshake era, with ``resources/subscribe``):

- the stream's acknowledgement comes once the backend has taken the resource subscription,
  and the backend's ``notifications/resources/updated`` reaches the stream with the exposed URI;
- a backend's tool list change reaches the stream as ``notifications/tools/list_changed``;
- when the stream ends, the router drops the backend subscription;
- ``server/discover`` advertises listChanged and ``resources.subscribe``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged

from support import SERVERS, in_process_router, wait_until_async, write_config

pytestmark = pytest.mark.timeout(120)


def _text(result: object) -> str:
    return " ".join(getattr(c, "text", "") for c in getattr(result, "content", []))


async def test_a_listen_stream_gets_backend_resource_updates_and_list_changes(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "proto.yaml",
        [
            {
                "name": "proto",
                "command": sys.executable,
                "args": [str(SERVERS / "protocol.py"), "--transport", "stdio"],
                "connect_timeout_seconds": 60,
            }
        ],
    )
    async with (
        in_process_router(config) as router,
        Client(router.server._mcp_server, mode="auto") as client,
    ):
        assert client.protocol_version == "2026-07-28"
        caps = client.server_capabilities  # from server/discover
        assert caps.tools and caps.tools.list_changed
        assert caps.resources and caps.resources.subscribe and caps.resources.list_changed

        watched = next(
            str(r.uri) for r in (await client.list_resources()).resources if r.name == "watched"
        )
        assert watched != "proto://watched"  # exposed under the backend's namespace

        async with client.listen(resource_subscriptions=[watched], tools_list_changed=True) as sub:
            # acknowledged: the backend holds the router's subscription by now
            touched = await client.call_tool("proto_touch", {"uri": "proto://watched"})
            assert _text(touched) == "notified 1"
            with anyio.fail_after(30):
                event = await sub.__anext__()
                # A list change may come first: the first 2026-07-28 call starts the stdio
                # backend's modern channel and capability sessions, which can change the
                # catalog. Nothing else may arrive before the update.
                while event == ToolsListChanged():
                    event = await sub.__anext__()
            assert event == ResourceUpdated(uri=watched)

            added = await client.call_tool("proto_add_tool", {"name": "fresh"})
            assert _text(added) == "added fresh"
            # Every event now is a list change; one of them must be followed by a list that
            # has the new tool. Several may come: the modern channel's start-up (above) can
            # still be announcing when the tool is added, and a list change announced for it
            # arrives before the one for the new tool.
            with anyio.fail_after(30):
                while True:
                    event = await sub.__anext__()
                    assert event == ToolsListChanged()
                    if "proto_fresh" in {t.name for t in (await client.list_tools()).tools}:
                        break

        # the stream is over: the router unsubscribed on the backend
        async def nobody_notified() -> bool:
            done = await client.call_tool("proto_touch", {"uri": "proto://watched"})
            return _text(done) == "notified 0"

        await wait_until_async(nobody_notified, 30, "the backend subscription dropped")
