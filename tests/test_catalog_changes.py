"""A backend that changes what a tool says (description, title, schema) without renaming it:
clients are told, and get the new definition; bursts of changes become one notification."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from support import PYTHON, SERVERS, in_process_router, wait_until_async, write_config

pytestmark = pytest.mark.timeout(90)

MUTABLE = str(SERVERS / "mutable.py")
LIST_CHANGED = "notifications/tools/list_changed"


def _config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "mutable.yaml",
        [{"name": "mut", "command": PYTHON, "args": [MUTABLE], "connect_timeout_seconds": 30}],
    )


def _notifications() -> tuple[list[str], Any]:
    """The methods of the notifications a client received, and its message handler."""
    notified: list[str] = []

    async def on_message(message: Any) -> None:
        if method := getattr(message, "method", None):
            notified.append(method)

    return notified, on_message


async def test_a_changed_description_and_schema_reach_clients_under_the_same_name(
    tmp_path: Path,
) -> None:
    notified, on_message = _notifications()

    async with in_process_router(_config(tmp_path)) as router:
        server = router.server._mcp_server
        async with (
            Client(server, mode="legacy", message_handler=on_message) as caller,
            Client(server, mode="legacy", message_handler=on_message) as watcher,
        ):
            before = {t.name: t for t in (await watcher.session.list_tools()).tools}
            assert before["mut_target"].description == "Echo the text back (version 1)."
            assert "count" not in before["mut_target"].input_schema["properties"]

            seen = notified.count(LIST_CHANGED)
            result = await caller.session.call_tool(
                "mut_mutate_tool",
                {"description": "Echo it, counted (version 2).", "parameter": "count"},
            )
            assert not result.is_error, result.content

            async def both_told() -> bool:
                # the caller and the other client, each told after the change
                return notified.count(LIST_CHANGED) >= seen + 2

            await wait_until_async(both_told, 30, "tools/list_changed at both clients")

            async def listed_target() -> Any:
                tools = {t.name: t for t in (await watcher.session.list_tools()).tools}
                changed = tools["mut_target"].description != before["mut_target"].description
                return tools["mut_target"] if changed else None

            target = await wait_until_async(listed_target, 30, "the new definition listed")
            assert target.description == "Echo it, counted (version 2)."
            assert "count" in target.input_schema["properties"]
            called = await watcher.session.call_tool("mut_target", {"text": "ab", "count": "2"})
            assert called.content[0].text == "target v2: ab"  # the new definition answered


async def test_a_burst_of_catalog_changes_becomes_one_notification_per_client(
    tmp_path: Path,
) -> None:
    notified, on_message = _notifications()

    async with in_process_router(_config(tmp_path)) as router:
        server = router.server._mcp_server
        async with Client(server, mode="legacy", message_handler=on_message) as client:
            await client.session.list_tools()  # the client is now a connected session
            for _ in range(5):  # what five quick re-lists of a backend announce
                router.sessions.announce({"tools"})
            await anyio.sleep(0.5)
            assert notified.count(LIST_CHANGED) == 1, notified
