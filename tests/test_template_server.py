"""Tests for the bundled demo server (``mcp-server`` / ``python -m mcp_router.template``)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
import mcp.types as mt
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.exceptions import ToolError

from mcp_router import __version__
from mcp_router.template.server import create_server

TOOLS = ["echo", "add", "word_count", "current_time", "slow_echo", "fail"]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with Client(create_server()) as c:
        yield c


def text_of(result: Any) -> str:
    content = result.content
    assert len(content) == 1 and isinstance(content[0], mt.TextContent)
    return content[0].text


async def test_lists(client: Client) -> None:
    tools = await client.list_tools()
    assert [t.name for t in tools] == TOOLS
    assert all(t.description for t in tools)
    by_name = {t.name: t for t in tools}
    assert by_name["echo"].annotations is not None
    assert by_name["echo"].annotations.read_only_hint is True
    add_ann = by_name["add"].annotations
    assert add_ann is not None and add_ann.read_only_hint and add_ann.idempotent_hint
    assert by_name["add"].output_schema is not None
    assert by_name["add"].output_schema["properties"]["result"] == {"type": "number"}
    wc_schema = by_name["word_count"].output_schema
    assert wc_schema is not None
    assert set(wc_schema["properties"]) == {"words", "characters", "lines"}
    assert by_name["echo"].output_schema is None

    resources = await client.list_resources()
    assert [(r.uri, r.mime_type) for r in resources] == [
        ("demo://readme", "text/markdown"),
        ("demo://config", "application/json"),
    ]
    templates = await client.list_resource_templates()
    assert [t.uri_template for t in templates] == ["demo://greeting/{name}"]

    prompts = await client.list_prompts()
    assert [p.name for p in prompts] == ["summarize", "code_review"]
    args = {p.name: [(a.name, a.required) for a in p.arguments or []] for p in prompts}
    assert args == {
        "summarize": [("text", True), ("style", False)],
        "code_review": [("code", True), ("language", False)],
    }


async def test_echo(client: Client) -> None:
    result = await client.call_tool("echo", {"text": "héllo wörld"})
    assert text_of(result) == "héllo wörld"
    assert result.structured_content is None
    assert result.is_error is False


async def test_add_structured(client: Client) -> None:
    result = await client.call_tool("add", {"a": 1, "b": 2.5})
    assert result.structured_content == {"result": 3.5}
    assert result.data == 3.5
    assert text_of(result) == "3.5"


async def test_word_count_structured(client: Client) -> None:
    result = await client.call_tool("word_count", {"text": "one two\nthree"})
    assert result.structured_content == {"words": 3, "characters": 13, "lines": 2}
    assert json.loads(text_of(result)) == {"words": 3, "characters": 13, "lines": 2}
    empty = await client.call_tool("word_count", {"text": ""})
    assert empty.structured_content == {"words": 0, "characters": 0, "lines": 0}


async def test_current_time(client: Client) -> None:
    default = datetime.fromisoformat(text_of(await client.call_tool("current_time", {})))
    assert default.utcoffset() == timedelta(0)
    try:
        ZoneInfo("Europe/Paris")
    except ZoneInfoNotFoundError:
        pytest.skip("no IANA timezone database on this machine")
    paris = datetime.fromisoformat(
        text_of(await client.call_tool("current_time", {"timezone": "Europe/Paris"}))
    )
    assert paris.utcoffset() in {timedelta(hours=1), timedelta(hours=2)}
    assert abs((paris - default).total_seconds()) < 60


async def test_current_time_unknown_timezone(client: Client) -> None:
    result = await client.call_tool_mcp("current_time", {"timezone": "Mars/Olympus_Mons"})
    assert result.is_error is True
    assert "Mars/Olympus_Mons" in text_of(result)


async def test_slow_echo_reports_progress(client: Client) -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    with anyio.fail_after(10):
        result = await client.call_tool(
            "slow_echo", {"text": "later", "seconds": 0.5}, progress_handler=on_progress
        )
    assert text_of(result) == "later"
    assert [u[0] for u in updates] == [1, 2, 3, 4, 5]
    assert all(u[1] == 5 for u in updates)

    instant = await client.call_tool("slow_echo", {"text": "now", "seconds": 0})
    assert text_of(instant) == "now"


async def test_fail_is_tool_error(client: Client) -> None:
    raw = await client.call_tool_mcp("fail", {"message": "boom"})
    assert raw.is_error is True
    assert text_of(raw) == "boom"
    with pytest.raises(ToolError, match="boom"):
        await client.call_tool("fail", {"message": "boom"})


async def test_resources(client: Client) -> None:
    readme = await client.read_resource("demo://readme")
    assert len(readme) == 1 and isinstance(readme[0], mt.TextResourceContents)
    assert readme[0].mime_type == "text/markdown"
    assert "mcp-router" in readme[0].text

    config = await client.read_resource("demo://config")
    assert isinstance(config[0], mt.TextResourceContents)
    assert config[0].mime_type == "application/json"
    assert json.loads(config[0].text) == {"name": "mcp-server", "version": __version__}

    greeting = await client.read_resource("demo://greeting/Ada")
    assert isinstance(greeting[0], mt.TextResourceContents)
    assert greeting[0].text == "Hello, Ada!"
    assert greeting[0].uri == "demo://greeting/Ada"


async def test_prompts(client: Client) -> None:
    summary = await client.get_prompt("summarize", {"text": "The quick brown fox."})
    assert len(summary.messages) == 1
    message = summary.messages[0]
    assert message.role == "user" and isinstance(message.content, mt.TextContent)
    assert "The quick brown fox." in message.content.text
    assert "one or two sentences" in message.content.text

    bullets = await client.get_prompt("summarize", {"text": "x", "style": "bullets"})
    assert isinstance(bullets.messages[0].content, mt.TextContent)
    assert "bulleted" in bullets.messages[0].content.text

    review = await client.get_prompt("code_review", {"code": "x = 1", "language": "Rust"})
    assert isinstance(review.messages[0].content, mt.TextContent)
    assert "```rust\nx = 1\n```" in review.messages[0].content.text
    assert "Rust code" in review.messages[0].content.text


async def test_stdio_subprocess() -> None:
    transport = StdioTransport(
        command=sys.executable, args=["-m", "mcp_router.template"], keep_alive=False
    )
    with anyio.fail_after(30):
        async with Client(transport) as stdio_client:
            tools = await stdio_client.list_tools()
            assert [t.name for t in tools] == TOOLS
            result = await stdio_client.call_tool("echo", {"text": "over stdio"})
            assert text_of(result) == "over stdio"
