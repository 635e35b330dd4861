"""2026-07-28 clients in front of a legacy-only backend: what the backend asks mid-call
(sampling, elicitation, roots) comes back as an ``InputRequiredResult`` round, and the
client's retry answers it; tampered, replayed and abandoned rounds are handled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from support import EVERYTHING, in_process_router, wait_until_async, write_config

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not EVERYTHING.exists(), reason="npm ci installs server-everything"),
]


async def _sample(_context: Any, params: types.CreateMessageRequestParams) -> Any:
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="sampled!"), model="m"
    )


async def _elicit(_context: Any, params: Any) -> Any:
    return types.ElicitResult(action="accept", content={"color": "blue"})


async def _roots(_context: Any) -> Any:
    return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/modern-root", name="r")])


@asynccontextmanager
async def _router(tmp_path: Path, **routing: Any) -> AsyncIterator[Any]:
    config = write_config(
        tmp_path / "every.yaml",
        [{"name": "every", "command": str(EVERYTHING), "args": ["stdio"]}],
        routing or None,
    )
    async with in_process_router(config) as router:
        yield router


def _modern(router: Any, **callbacks: Any) -> Client:
    return Client(router.server._mcp_server, mode="auto", **callbacks)


def _text(result: types.CallToolResult) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def test_sampling_from_a_legacy_backend_reaches_a_modern_client_as_an_input_round(
    tmp_path: Path,
) -> None:
    async with _router(tmp_path) as router, _modern(router, sampling_callback=_sample) as c:
        assert c.protocol_version == "2026-07-28"
        await c.list_tools()  # as clients do: the catalog is the one its capabilities see
        result = await c.call_tool("every_trigger-sampling-request", {"prompt": "hi"})
        assert not result.is_error, _text(result)
        assert "sampled!" in _text(result)
        assert len(router_rounds(router)) == 0  # the round is over


async def test_elicitation_from_a_legacy_backend_reaches_a_modern_client(
    tmp_path: Path,
) -> None:
    async with (
        _router(tmp_path) as router,
        _modern(router, elicitation_callback=_elicit, list_roots_callback=_roots) as c,
    ):

        async def elicitation_tool() -> str | None:
            # the elicitation profile's backend session opens in the background
            tools = {t.name for t in (await c.list_tools()).tools}
            return next((n for n in tools if "elicitation" in n and "url" not in n), None)

        elicit = await wait_until_async(elicitation_tool, 30, "the elicitation tool listed")
        tools = {t.name for t in (await c.list_tools()).tools}
        answered = await c.call_tool(elicit, {})
        assert not answered.is_error, _text(answered)
        assert "blue" in _text(answered) or "accept" in _text(answered)
        # Roots are per-client data: shared backend sessions never declare them (a server
        # caches a session's roots), so server-everything offers no roots tool here.
        assert "every_get-roots-list" not in tools


async def test_the_first_leg_is_an_input_required_result_and_a_replayed_state_is_refused(
    tmp_path: Path,
) -> None:
    async with _router(tmp_path) as router, _modern(router, sampling_callback=_sample) as c:
        await c.list_tools()
        first = await c.session.call_tool(
            "every_trigger-sampling-request", {"prompt": "hi"}, allow_input_required=True
        )
        assert isinstance(first, types.InputRequiredResult)
        ((key, request),) = first.input_requests.items()
        assert request.method == "sampling/createMessage"
        answer = {key: await _sample(None, request.params)}
        final = await c.session.call_tool(
            "every_trigger-sampling-request",
            {"prompt": "hi"},
            input_responses=answer,
            request_state=first.request_state,
            allow_input_required=True,
        )
        assert isinstance(final, types.CallToolResult) and "sampled!" in _text(final)
        with pytest.raises(MCPError) as replayed:
            await c.session.call_tool(
                "every_trigger-sampling-request",
                {"prompt": "hi"},
                input_responses=answer,
                request_state=first.request_state,
                allow_input_required=True,
            )
        assert replayed.value.error.code == types.INVALID_PARAMS


async def test_an_abandoned_round_is_cancelled_after_the_input_timeout(tmp_path: Path) -> None:
    async with (
        _router(tmp_path, input_timeout_seconds=1.0) as router,
        _modern(router, sampling_callback=_sample) as c,
    ):
        await c.list_tools()
        first = await c.session.call_tool(
            "every_trigger-sampling-request", {"prompt": "hi"}, allow_input_required=True
        )
        assert isinstance(first, types.InputRequiredResult)
        assert len(router_rounds(router)) == 1
        backend = router.manager.backends["every"]
        assert backend.in_flight == 1  # the backend call waits for the client's answer

        async def cancelled() -> bool:
            return not len(router_rounds(router)) and not backend.in_flight

        await wait_until_async(cancelled, 10, "the abandoned round to be cancelled on the backend")


def router_rounds(router: Any) -> Any:
    from mcp_router.gateway.middleware import RoutingMiddleware

    middleware = next(m for m in router.server.middleware if isinstance(m, RoutingMiddleware))
    return middleware._entry.rounds
