"""Each backend is spoken to in the era the client uses, where the backend supports it.

One router over streamable HTTP in front of `tests/servers/modern.py` backends: over HTTP and
stdio (they speak 2026-07-28), over SSE (always 2025-11-25), over HTTP with ``era: legacy``,
and two HTTP replicas in one group. The SDK ``Client`` in ``mode="auto"`` (2026-07-28) gets
elicitation, sampling and roots from the modern backends as the backends' own
``InputRequiredResult`` (each backend reports the era it was asked in and its own
``requestState`` coming back), and from the legacy-only ones as router rounds; a legacy
client (``mode="legacy"``) still gets server-to-client requests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from support import PYTHON, SERVERS, RouterProcess, run_router, wait_until_async, write_config

pytestmark = [pytest.mark.xdist_group("modern"), pytest.mark.timeout(180)]

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
TESTER = types.Implementation(name="modern-tester", version="1.0")
ROOT = "file:///tmp/modern-root"


async def _elicit(_context: Any, params: Any) -> Any:
    return types.ElicitResult(action="accept", content={"color": "blue"})


async def _sample(_context: Any, params: types.CreateMessageRequestParams) -> Any:
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="sampled!"), model="m"
    )


async def _roots(_context: Any) -> Any:
    return types.ListRootsResult(roots=[types.Root(uri=ROOT, name="r")])


@pytest.fixture(scope="module")
def router(start_server: Callable[..., str], module_tmp: Path) -> Iterator[RouterProcess]:
    """The router over HTTP in front of every kind of backend (namespaces in brackets):
    HTTP [a], stdio [s], SSE [e], HTTP forced legacy [f], two HTTP replicas [r]."""
    stdio = [str(SERVERS / "modern.py"), "--transport", "stdio", "--name", "stdio-one"]
    backends: list[dict[str, Any]] = [
        {"name": "alpha", "url": start_server("modern", "http", name="alpha"), "namespace": "a"},
        {
            "name": "stdio-one",
            "command": PYTHON,
            "args": stdio,
            "namespace": "s",
            "connect_timeout_seconds": 60,
        },
        {"name": "old", "url": start_server("modern", "sse", name="old"), "namespace": "e"},
        {
            "name": "forced",
            "url": start_server("modern", "http", name="forced"),
            "namespace": "f",
            "era": "legacy",
        },
        {"name": "r1", "url": start_server("modern", "http", name="r1"), "namespace": "r"},
        {"name": "r2", "url": start_server("modern", "http", name="r2"), "namespace": "r"},
    ]
    config = write_config(module_tmp / "modern.yaml", backends, {"load_balancing": "round_robin"})
    with run_router(config, module_tmp / "router.log", timeout=90) as proc:
        yield proc


def _modern(router: RouterProcess, **callbacks: Any) -> Client:
    return Client(router.url, mode="auto", client_info=TESTER, **callbacks)


def _all_callbacks() -> dict[str, Any]:
    return {
        "elicitation_callback": _elicit,
        "sampling_callback": _sample,
        "list_roots_callback": _roots,
    }


def _text(result: types.CallToolResult) -> str:
    assert not result.is_error, result.content
    return " ".join(getattr(c, "text", "") for c in result.content)


def _seen(text: str) -> dict[str, str]:
    """``server=alpha era=... client=... state=... answer=...`` as a dict."""
    return dict(part.split("=", 1) for part in text.split(" ", 4))


async def _health(client: Client, backend: str) -> dict[str, Any]:
    result = await client.call_tool("router_get_backend_health", {"backend_name": backend})
    assert isinstance(result.structured_content, dict), result.content
    return result.structured_content


async def _probed(router: RouterProcess, *backends: str) -> None:
    """Wait until the router has found that ``backends`` speak 2026-07-28 (HTTP backends are
    probed as soon as their legacy session is up, in the background)."""
    async with Client(router.url, mode="legacy") as client:
        for backend in backends:

            async def modern(name: str = backend) -> bool:
                return MODERN in (await _health(client, name))["protocol_versions"]

            await wait_until_async(modern, 30, f"backend {backend} probed for 2026-07-28")


async def test_an_http_backend_asks_a_modern_client_in_2026_07_28_with_its_own_input_rounds(
    router: RouterProcess,
) -> None:
    await _probed(router, "alpha")
    async with _modern(router, **_all_callbacks()) as client:
        assert client.protocol_version == MODERN
        await client.list_tools()
        asks = {
            "a_ask_color": ({}, "blue", "color"),
            "a_ask_llm": ({"prompt": "hi"}, "sampled!", "llm"),
            "a_ask_roots": ({}, ROOT, "roots"),
        }
        for tool, (arguments, answer, what) in asks.items():
            seen = _seen(_text(await client.call_tool(tool, arguments)))
            # asked in 2026-07-28 as this client, and its own requestState came back untouched
            assert seen == {
                "server": "alpha",
                "era": MODERN,
                "client": TESTER.name,
                "state": f"alpha-asked-{what}",
                "answer": answer,
            }
        health = await _health(client, "alpha")
        assert health["protocol_versions"] == [LEGACY, MODERN]


async def test_the_backends_input_required_result_passes_through_and_its_retry_returns(
    router: RouterProcess,
) -> None:
    await _probed(router, "alpha")
    async with _modern(router, **_all_callbacks()) as client:
        await client.list_tools()
        first = await client.session.call_tool("a_ask_color", {}, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult)
        # the backend's own question, key and all (a router round numbers its keys r1, r2...)
        assert list(first.input_requests or {}) == ["color"]
        request = (first.input_requests or {})["color"]
        assert request.method == "elicitation/create"
        assert request.params.message == "Your color?"
        # the state the client holds is sealed by the router: not the backend's plaintext
        assert first.request_state and "alpha-asked-color" not in first.request_state
        tampered = first.request_state[:-4] + (
            "AAAA" if first.request_state[-4:] != "AAAA" else "BBBB"
        )
        with pytest.raises(MCPError) as refused:
            await client.session.call_tool(
                "a_ask_color",
                {},
                input_responses={"color": await _elicit(None, request.params)},
                request_state=tampered,
                allow_input_required=True,
            )
        assert refused.value.error.code == types.INVALID_PARAMS
        final = await client.session.call_tool(
            "a_ask_color",
            {},
            input_responses={"color": await _elicit(None, request.params)},
            request_state=first.request_state,
            allow_input_required=True,
        )
        assert isinstance(final, types.CallToolResult)
        assert _seen(_text(final))["state"] == "alpha-asked-color"


async def test_prompts_and_resources_of_a_modern_backend_pass_its_input_rounds_through(
    router: RouterProcess,
) -> None:
    await _probed(router, "alpha")
    async with _modern(router, elicitation_callback=_elicit) as client:
        prompt = await client.get_prompt("a_ask_prompt")
        text = getattr(prompt.messages[0].content, "text", "")
        assert text.startswith("prompt server=alpha era=2026-07-28"), text
        assert "state=alpha-asked-color answer=blue" in text
        read = await client.read_resource("modern://a/asked")
        body = getattr(read.contents[0], "text", "")
        assert body.startswith("resource server=alpha era=2026-07-28"), body
        assert "answer=blue" in body


async def test_the_modern_client_envelope_reaches_the_backend_per_request(
    router: RouterProcess,
) -> None:
    await _probed(router, "alpha")
    logs: list[Any] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    async with (
        _modern(
            router, sampling_callback=_sample, log_level="info", logging_callback=on_log
        ) as one,
        _modern(router, elicitation_callback=_elicit) as other,
    ):
        seen = json.loads(_text(await one.call_tool("a_whoami", {})))
        assert seen["era"] == MODERN and seen["client"] == TESTER.name
        assert seen["capabilities"] == ["sampling"]  # exactly what this client declared
        assert seen["log_level"] == "info"
        assert any("whoami" in str(data) for data in logs)  # its log, opted in per request
        seen = json.loads(_text(await other.call_tool("a_whoami", {})))
        assert seen["capabilities"] == ["elicitation"]
        assert seen["log_level"] is None


async def test_a_stdio_backend_is_probed_on_first_use_and_speaks_2026_07_28(
    router: RouterProcess,
) -> None:
    async with _modern(router, **_all_callbacks()) as client:
        await client.list_tools()
        # The first 2026-07-28 request starts the modern channel (a second process) and is
        # served at once on the legacy session; later ones use the channel once it is up.
        first = json.loads(_text(await client.call_tool("s_whoami", {})))
        assert first["server"] == "stdio-one" and first["client"] in (TESTER.name, "mcp-router")

        async def probed() -> list[str]:
            versions = (await _health(client, "stdio-one"))["protocol_versions"]
            return versions if versions == [LEGACY, MODERN] else []

        await wait_until_async(probed, 60, "the stdio backend's modern channel")
        seen = _seen(_text(await client.call_tool("s_ask_color", {})))
        assert seen["server"] == "stdio-one" and seen["era"] == MODERN
        assert seen["state"] == "stdio-one-asked-color" and seen["answer"] == "blue"
        seen = _seen(_text(await client.call_tool("s_ask_llm", {"prompt": "x"})))
        assert seen["era"] == MODERN and seen["answer"] == "sampled!"


@pytest.mark.parametrize(("prefix", "backend"), [("e", "old"), ("f", "forced")])
async def test_a_legacy_only_backend_asks_a_modern_client_through_router_rounds(
    router: RouterProcess, prefix: str, backend: str
) -> None:
    async with _modern(router, elicitation_callback=_elicit, sampling_callback=_sample) as client:

        async def listed() -> bool:
            # the sampling+elicitation profile's session opens in the background
            names = {t.name for t in (await client.list_tools()).tools}
            return f"{prefix}_ask_llm" in names

        await wait_until_async(listed, 60, "the profile session's tools listed")
        first = await client.session.call_tool(f"{prefix}_ask_color", {}, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult)
        assert list(first.input_requests or {}) == ["r1"]  # the router's round, not the backend's
        (request,) = (first.input_requests or {}).values()
        final = await client.session.call_tool(
            f"{prefix}_ask_color",
            {},
            input_responses={"r1": await _elicit(None, request.params)},
            request_state=first.request_state,
            allow_input_required=True,
        )
        assert isinstance(final, types.CallToolResult) and "answer=blue" in _text(final)
        seen = _seen(_text(await client.call_tool(f"{prefix}_ask_color", {})))
        assert seen["server"] == backend and seen["era"] == LEGACY and seen["answer"] == "blue"
        seen = _seen(_text(await client.call_tool(f"{prefix}_ask_llm", {"prompt": "x"})))
        assert seen["era"] == LEGACY and seen["answer"] == "sampled!"
        assert (await _health(client, backend))["protocol_versions"] == [LEGACY]


async def test_roots_a_legacy_only_backend_asks_during_a_call_reach_a_modern_client_as_a_round(
    router: RouterProcess,
) -> None:
    # Shared sessions never declare roots (module doc of backends/capabilities.py); a server
    # that asks anyway during a call is answered by the calling client, through a round.
    async with _modern(router, list_roots_callback=_roots) as client:
        await client.list_tools()
        first = await client.session.call_tool("e_ask_roots", {}, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult)
        ((key, request),) = (first.input_requests or {}).items()
        assert request.method == "roots/list"
        final = await client.session.call_tool(
            "e_ask_roots",
            {},
            input_responses={key: await _roots(None)},
            request_state=first.request_state,
            allow_input_required=True,
        )
        assert isinstance(final, types.CallToolResult)
        seen = _seen(_text(final))
        assert seen["server"] == "old" and seen["era"] == LEGACY and seen["answer"] == ROOT


async def test_a_legacy_client_still_gets_server_to_client_requests_from_a_modern_backend(
    router: RouterProcess,
) -> None:
    async with Client(
        router.url, mode="legacy", elicitation_callback=_elicit, sampling_callback=_sample
    ) as client:
        assert client.protocol_version == LEGACY

        async def listed() -> bool:
            names = {t.name for t in (await client.list_tools()).tools}
            return "a_ask_llm" in names and "s_ask_llm" in names

        await wait_until_async(listed, 60, "the profile sessions' tools listed")
        for tool in ("a_ask_color", "s_ask_color"):
            seen = _seen(_text(await client.call_tool(tool, {})))
            assert seen["era"] == LEGACY and seen["answer"] == "blue"
        seen = _seen(_text(await client.call_tool("a_ask_llm", {"prompt": "x"})))
        assert seen["era"] == LEGACY and seen["answer"] == "sampled!"


async def test_the_retry_of_a_backends_round_goes_to_the_replica_that_asked(
    router: RouterProcess,
) -> None:
    await _probed(router, "r1", "r2")
    # round_robin would send each retry to the other replica, whose sealing key differs
    # (each process has its own): the router pins the retry to the backend that asked.
    async with _modern(router, elicitation_callback=_elicit) as client:
        await client.list_tools()
        servers = []
        for _ in range(4):
            seen = _seen(_text(await client.call_tool("r_ask_color", {})))
            assert seen["era"] == MODERN and seen["answer"] == "blue"
            assert seen["state"] == f"{seen['server']}-asked-color"
            servers.append(seen["server"])
        assert set(servers) == {"r1", "r2"}  # both replicas served first legs
