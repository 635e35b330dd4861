"""A 2026-07-28 client (mcp SDK ``Client``, ``mode="auto"``) through the router in front of a
backend spoken to in the handshake era (``tests/servers/conformance2026.py`` over stdio):

- what the backend asks mid-call reaches the client as one ``InputRequiredResult`` round, for
  ``tools/call`` and for ``prompts/get``, several questions at once included;
- a question the client cannot answer, because it did not declare the capability, ends the
  client's request with -32021 and ``requiredCapabilities``, never with a result the backend
  produced without it.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from support import fastmcp_server, in_process_router, write_config

pytestmark = pytest.mark.timeout(180)


@asynccontextmanager
async def _router(tmp_path: Path) -> AsyncIterator[Any]:
    config = write_config(
        tmp_path / "legacy.yaml",
        [
            {
                "name": "legacy",
                "command": sys.executable,
                "args": fastmcp_server("conformance2026", "stdio")[1:],
                "namespace": "",
                # each capability profile is a Python child of its own: slow on a busy machine
                "connect_timeout_seconds": 60,
            }
        ],
    )
    async with in_process_router(config) as router:
        yield router


class Answers:
    """Client callbacks that answer and count what they were asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def elicit(self, _context: Any, params: Any) -> types.ElicitResult:
        self.asked.append("elicitation")
        field = next(iter(params.requested_schema["properties"]))
        return types.ElicitResult(action="accept", content={field: "Alice"})

    async def sample(self, _context: Any, params: Any) -> types.CreateMessageResult:
        self.asked.append("sampling")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="Hi"), model="m"
        )

    async def roots(self, _context: Any) -> types.ListRootsResult:
        self.asked.append("roots")
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/r", name="r")])


def _text(result: types.CallToolResult) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def test_three_questions_asked_at_once_reach_the_client_in_one_round(
    tmp_path: Path,
) -> None:
    answers = Answers()
    async with (
        _router(tmp_path) as router,
        Client(
            router.server._mcp_server,
            mode="auto",
            elicitation_callback=answers.elicit,
            sampling_callback=answers.sample,
            list_roots_callback=answers.roots,
        ) as client,
    ):
        assert client.protocol_version == "2026-07-28"
        result = await client.call_tool("test_input_required_result_multiple_inputs", {})
        assert not result.is_error, _text(result)
        assert _text(result) == "Hi Alice, 1 root(s)"
        assert sorted(answers.asked) == ["elicitation", "roots", "sampling"]


async def test_a_prompt_that_asks_takes_part_in_the_round_like_a_tool_call(
    tmp_path: Path,
) -> None:
    answers = Answers()
    async with (
        _router(tmp_path) as router,
        Client(router.server._mcp_server, mode="auto", elicitation_callback=answers.elicit) as c,
    ):
        prompt = await c.get_prompt("test_input_required_result_prompt")
        texts = [getattr(m.content, "text", "") for m in prompt.messages]
        assert texts == ["Use this context: Alice"]
        assert answers.asked == ["elicitation"]


async def test_a_question_for_an_undeclared_capability_ends_the_request_with_32021(
    tmp_path: Path,
) -> None:
    answers = Answers()
    async with (
        _router(tmp_path) as router,
        # sampling only: the backend's tool asks for elicitation regardless
        Client(router.server._mcp_server, mode="auto", sampling_callback=answers.sample) as c,
    ):
        with pytest.raises(MCPError) as raised:
            await c.call_tool("test_input_required_result_elicitation", {})
        error = raised.value.error
        assert error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY, error
        assert isinstance(error.data, dict)
        assert set(error.data["requiredCapabilities"]) == {"elicitation"}, error.data
        assert answers.asked == []
        # the declared capability still works on the same client
        sampled = await c.call_tool("test_input_required_result_sampling", {})
        assert _text(sampled) == "LLM response: Hi"
