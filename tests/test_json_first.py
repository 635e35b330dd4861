"""The HTTP front answers a request with JSON until the backend sends something before its result.

A router over streamable HTTP fronts the demo server and ``proto`` (tests/servers/protocol.py),
both over stdio. An SDK client whose HTTP client records each POST's response type shows:
a result with nothing before it comes back as ``application/json``; progress, a log message or
a sampling request sent for the call turns the answer into ``text/event-stream``, and every
such message still reaches the client with the result after it. The raw-HTTP tests pin the
wire: the JSON body is the JSON-RPC response itself, and the stream carries the same response
after the notifications.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from support import PYTHON, SERVERS, RouterProcess, write_config

pytestmark = [
    pytest.mark.timeout(60, func_only=True),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

JSON = "application/json"
SSE = "text/event-stream"
ACCEPT = {"accept": f"{JSON}, {SSE}", "content-type": JSON}


@pytest.fixture(scope="module")
def router(module_tmp: Path, start_router: Callable[..., RouterProcess]) -> RouterProcess:
    config = write_config(
        module_tmp / "json-first.yaml",
        [
            {
                "name": "demo",
                "command": PYTHON,
                "args": ["-m", "mcp_router.template", "--log-level", "WARNING"],
                "connect_timeout_seconds": 60,
            },
            {
                "name": "proto",
                "command": PYTHON,
                "args": [str(SERVERS / "protocol.py"), "--transport", "stdio"],
                "connect_timeout_seconds": 60,
            },
        ],
    )
    return start_router(config)


class Recorder:
    """Remembers the response type of every request POST, by JSON-RPC method and tool name."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    async def on_response(self, response: httpx2.Response) -> None:
        request = response.request
        if request.method != "POST":
            return
        body = json.loads(request.content)
        if "id" not in body or "method" not in body:
            return  # a notification or a reply to the server
        name = str((body.get("params") or {}).get("name", ""))
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        self.seen.append((body["method"], name, kind))

    def kind_of(self, method: str, name: str = "") -> str:
        """The one response type every such POST got (the SDK client lists tools itself too)."""
        kinds = {k for m, n, k in self.seen if m == method and n == name}
        assert len(kinds) == 1, f"{method} {name}: {self.seen}"
        return kinds.pop()


@contextlib.asynccontextmanager
async def recording_client(url: str, **options: Any) -> AsyncIterator[tuple[Client, Recorder]]:
    recorder = Recorder()
    async with (
        httpx2.AsyncClient(
            timeout=httpx2.Timeout(30.0, read=60.0),
            event_hooks={"response": [recorder.on_response]},
        ) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy", **options) as client,
    ):
        yield client, recorder


def text(result: types.CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def test_result_with_nothing_before_it_is_json(router: RouterProcess) -> None:
    """Plain calls, a tool error and lists come back as JSON, with the backend's result."""
    async with recording_client(router.url) as (client, seen):
        echoed = await client.call_tool("demo_echo", {"text": "hello"})
        failed = await client.call_tool("demo_fail", {"message": "boom"})
        tools = await client.list_tools()
    assert text(echoed) == "hello" and not echoed.is_error
    assert failed.is_error and "boom" in text(failed)
    assert "demo_echo" in {t.name for t in tools.tools}
    assert seen.kind_of("initialize") == JSON
    assert seen.kind_of("tools/call", "demo_echo") == JSON
    assert seen.kind_of("tools/call", "demo_fail") == JSON
    assert seen.kind_of("tools/list") == JSON


async def test_progress_before_the_result_turns_the_answer_into_a_stream(
    router: RouterProcess,
) -> None:
    """The backend's progress comes first: SSE, all 5 notifications, then the result."""
    got: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        got.append(message)

    async with recording_client(router.url) as (client, seen):
        result = await client.call_tool(
            "proto_progress", {"tag": "p", "steps": 5}, progress_callback=on_progress
        )
        after = await client.call_tool("demo_echo", {"text": "again"})
    assert got == [f"p:{i}" for i in range(1, 6)]
    assert text(result) == "p done"
    assert seen.kind_of("tools/call", "proto_progress") == SSE
    assert text(after) == "again" and seen.kind_of("tools/call", "demo_echo") == JSON


async def test_log_message_before_the_result_turns_the_answer_into_a_stream(
    router: RouterProcess,
) -> None:
    logs: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async with recording_client(router.url, logging_callback=on_log) as (client, seen):
        await client.set_logging_level("debug")
        result = await client.call_tool("proto_log", {"tag": "json-first", "level": "warning"})
    assert text(result) == "logged json-first at warning"
    assert any("json-first" in str(p.data) for p in logs), logs
    assert seen.kind_of("tools/call", "proto_log") == SSE


async def test_sampling_request_before_the_result_turns_the_answer_into_a_stream(
    router: RouterProcess,
) -> None:
    """A server-to-client request on the call's stream: relayed, answered, result after it."""
    asked: list[str] = []

    async def on_sampling(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        asked.append(str(getattr(params.messages[0].content, "text", "")))
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled-answer"),
            model="m",
        )

    async with recording_client(router.url, sampling_callback=on_sampling) as (client, seen):
        result = await client.call_tool("proto_ask_sample", {"tag": "s1"})
    assert len(asked) == 1
    assert "sampled-answer" in text(result)
    assert seen.kind_of("tools/call", "proto_ask_sample") == SSE


def _session(http: httpx2.Client, url: str) -> dict[str, str]:
    """Open a handshake-era session by hand; the headers later requests need."""
    opened = http.post(
        url,
        headers=ACCEPT,
        json={
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        },
    )
    assert opened.status_code == 200, opened.text
    headers = {
        **ACCEPT,
        "mcp-session-id": opened.headers["mcp-session-id"],
        "mcp-protocol-version": "2025-06-18",
    }
    done = http.post(
        url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"}
    )
    assert done.status_code == 202
    return headers


def test_json_body_is_the_jsonrpc_response_and_the_stream_carries_the_same(
    router: RouterProcess,
) -> None:
    """On the wire: one JSON-RPC response as the body; with progress, the events then it."""
    call = {"name": "demo_slow_echo", "arguments": {"text": "hi", "seconds": 0.2}}
    with httpx2.Client(timeout=30) as http:
        headers = _session(http, router.url)
        plain = http.post(
            router.url,
            headers=headers,
            json={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": call},
        )
        streamed = http.post(
            router.url,
            headers=headers,
            json={
                "jsonrpc": "2.0",
                "id": 8,
                "method": "tools/call",
                "params": {**call, "_meta": {"progressToken": "t8"}},
            },
        )
    assert plain.headers["content-type"] == JSON
    assert plain.headers["mcp-session-id"] == headers["mcp-session-id"]
    body = plain.json()
    assert body == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"content": [{"type": "text", "text": "hi"}], "isError": False},
    }
    assert streamed.headers["content-type"].startswith(SSE)
    events = [
        json.loads(line[len("data: ") :])
        for line in streamed.text.splitlines()
        if line.startswith("data: ")
    ]
    assert [e.get("method") for e in events[:-1]] == ["notifications/progress"] * (len(events) - 1)
    assert len(events) >= 2
    assert all(e["params"]["progressToken"] == "t8" for e in events[:-1])
    assert events[-1] == {**body, "id": 8}


async def test_modern_client_gets_json_too(router: RouterProcess) -> None:
    """The 2026-07-28 era (stateless POSTs) defers the same way in the SDK itself."""
    recorder = Recorder()
    async with (
        httpx2.AsyncClient(timeout=30, event_hooks={"response": [recorder.on_response]}) as http,
        Client(streamable_http_client(router.url, http_client=http), mode="auto") as client,
    ):
        result = await client.call_tool("demo_echo", {"text": "modern"})
    assert text(result) == "modern"
    assert recorder.kind_of("tools/call", "demo_echo") == JSON


# ------------------------------------------------------------------ the response on its own


async def _answer(delay: float, ping: float) -> list[dict[str, Any]]:
    """What `JsonFirstResponse` sends when the result comes after ``delay`` seconds."""
    from anyio import create_memory_object_stream, sleep, sleep_forever

    from mcp_router.gateway.json_first import JsonFirstResponse, _Result

    writer, reader = create_memory_object_stream[Any](0)
    result = types.JSONRPCResponse(jsonrpc="2.0", id=1, result={"content": [], "isError": False})

    async def produce() -> None:
        async with writer:
            await sleep(delay)
            await writer.send(_Result(result))

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await sleep_forever()
        raise AssertionError("unreachable")

    response = JsonFirstResponse(
        content=reader,
        data_sender_callable=produce,
        headers={"mcp-session-id": "s1", "Content-Type": SSE},
        ping=ping,
    )
    scope = {"type": "http", "method": "POST", "headers": [], "path": "/mcp"}
    await response(scope, receive, send)
    return sent


async def test_a_result_within_the_deferral_window_is_one_json_body() -> None:
    sent = await _answer(delay=0.0, ping=5.0)
    start, body = sent
    headers = dict(start["headers"])
    assert headers[b"content-type"] == JSON.encode() and headers[b"mcp-session-id"] == b"s1"
    assert json.loads(body["body"]) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"content": [], "isError": False},
    }
    assert body["more_body"] is False


async def test_a_result_after_the_deferral_window_comes_as_an_sse_event() -> None:
    """Nothing within the window (the SSE ping interval): the answer commits to SSE."""
    sent = await _answer(delay=0.5, ping=0.1)
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"].startswith(SSE.encode())
    stream = b"".join(m.get("body", b"") for m in sent[1:])
    data = [line for line in stream.split(b"\r\n") if line.startswith(b"data: ")]
    assert [json.loads(line[6:]) for line in data] == [
        {"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": False}}
    ]
    assert sent[-1]["more_body"] is False
