"""The stdio front on asyncio pipes feeds the session exactly what the SDK's stdio_server does.

The same bytes go into a pipe read by the SDK's ``stdio_server`` (given the pipe as its stdin,
wrapped as the SDK wraps fd 0) and into a pipe read by `pipe_transport`; what each hands to the
session is compared item for item (messages by their dump, parse failures by type and text).
The same messages are written by both and the bytes compared. The corpus has messages of both
eras (handshake ``initialize`` and 2026-07-28 ``server/discover`` with ``_meta``), unicode and
invalid UTF-8, CRLF, lone CR, blank and broken lines, a message larger than a pipe's buffer and
a last line without a newline. The router's own stdio front is exercised end to end by every
stdio test (router_stdio in tests/support.py), here by one with progress.
"""

from __future__ import annotations

import json
import os
import threading
from io import TextIOWrapper
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

from mcp_router.gateway.stdio_front import pipe_transport, split_lines
from support import PYTHON, router_stdio, write_config

pytestmark = pytest.mark.timeout(120, func_only=True)


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


BIG = "x" * 200_000
CORPUS: list[bytes] = [
    _line(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {"sampling": {}},
                "clientInfo": {"name": "c", "version": "1"},
            },
        }
    )
    + b"\n",
    _line({"jsonrpc": "2.0", "method": "notifications/initialized"}) + b"\r\n",
    _line(
        {
            "jsonrpc": "2.0",
            "id": "two",
            "method": "server/discover",
            "params": {
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": {"name": "m", "version": "2"},
                }
            },
        }
    )
    + b"\n",
    _line(
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {
                "name": "echo",
                "arguments": {"text": "héllo ✓ 😀"},
                "_meta": {"progressToken": "p-3"},
            },
        }
    )
    + b"\r",  # a lone CR ends a line too
    _line({"jsonrpc": "2.0", "id": 9, "result": {"content": [], "isError": False}}) + b"\n",
    _line({"jsonrpc": "2.0", "id": 10, "error": {"code": -32601, "message": "nope"}}) + b"\n",
    b'{"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", '
    b'"data": "bad \xff\xfe bytes"}}\n',
    b"\n",  # blank line
    b"   \n",
    b"{not json\n",
    b'[{"jsonrpc": "2.0", "id": 4, "method": "ping"}]\n',  # a batch
    b'{"jsonrpc": "2.0", "id": 5, "method": "ping", "params": {}}\n',
    _line({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": BIG}}) + b"\n",
    _line({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}}),
]


def _feed(fd: int, data: bytes) -> threading.Thread:
    def run() -> None:
        with os.fdopen(fd, "wb") as out:
            for i in range(0, len(data), 7_000):  # odd chunks: lines and CRLFs split across reads
                out.write(data[i : i + 7_000])
                out.flush()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _item(item: SessionMessage | Exception) -> tuple[str, Any]:
    if isinstance(item, Exception):
        return (type(item).__name__, str(item))
    return ("message", item.message.model_dump(by_alias=True, exclude_unset=True))


class Ends:
    """The transport under test over two fresh pipes, and how to close what it was given."""

    def __init__(self, make: str, stdin_at_eof: bool = False) -> None:
        self.stdin_r, self.stdin_w = os.pipe()
        self.stdout_r, self.stdout_w = os.pipe()
        if stdin_at_eof:
            os.close(self.stdin_w)
        self.files: list[Any] = []
        if make == "sdk":
            # As stdio_server wraps fd 0/1 itself (its _UnownedTextWrapper is a TextIOWrapper).
            stdin = TextIOWrapper(os.fdopen(self.stdin_r, "rb"), encoding="utf-8", errors="replace")
            stdout = TextIOWrapper(os.fdopen(self.stdout_w, "wb"), encoding="utf-8")
            self.files = [stdin, stdout]
            self.transport: Any = stdio_server(anyio.wrap_file(stdin), anyio.wrap_file(stdout))
        else:
            self.transport = pipe_transport(self.stdin_r, self.stdout_w)

    def close_given(self) -> None:
        if self.files:
            for f in self.files:
                f.close()
        else:
            os.close(self.stdin_r)
            os.close(self.stdout_w)


async def _read_all(make: str, data: bytes) -> list[tuple[str, Any]]:
    ends = Ends(make)
    feeder = _feed(ends.stdin_w, data)
    got: list[tuple[str, Any]] = []
    with anyio.fail_after(60):
        async with ends.transport as (read_stream, write_stream), write_stream:
            async for item in read_stream:
                got.append(_item(item))
    feeder.join(10)
    ends.close_given()
    os.close(ends.stdout_r)
    return got


async def test_reads_what_the_sdk_reads_message_for_message() -> None:
    data = b"".join(CORPUS)
    sdk = await _read_all("sdk", data)
    ours = await _read_all("ours", data)
    assert ours == sdk
    kinds = [k for k, _ in sdk]
    assert kinds.count("message") >= 10 and "ValidationError" in kinds
    assert any(v.get("method") == "server/discover" for k, v in sdk if k == "message")


OUTGOING = [
    types.JSONRPCResponse(
        jsonrpc="2.0", id=1, result={"content": [{"type": "text", "text": "é😀"}]}
    ),
    types.JSONRPCNotification(
        jsonrpc="2.0",
        method="notifications/progress",
        params={"progressToken": "p-3", "progress": 1.0, "total": 2.0},
    ),
    types.JSONRPCRequest(
        jsonrpc="2.0",
        id=7,
        method="sampling/createMessage",
        params={"messages": [], "maxTokens": 5},
    ),
    types.JSONRPCError(jsonrpc="2.0", id="x", error=types.ErrorData(code=-32000, message="m")),
    types.JSONRPCResponse(
        jsonrpc="2.0",
        id=8,
        result={"resultType": "complete", "_meta": {"k": "v"}, "big": BIG},
    ),
]


async def _written(make: str) -> bytes:
    ends = Ends(make, stdin_at_eof=True)  # the transport ends once the messages are written
    chunks: list[bytes] = []

    def drain() -> None:
        with os.fdopen(ends.stdout_r, "rb") as source:
            while block := source.read(65536):
                chunks.append(block)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with anyio.fail_after(60):
        async with ends.transport as (read_stream, write_stream):
            async with write_stream:
                for message in OUTGOING:
                    await write_stream.send(SessionMessage(message))
            async for _ in read_stream:
                pass
    ends.close_given()
    reader.join(10)
    return b"".join(chunks)


async def test_writes_what_the_sdk_writes_byte_for_byte() -> None:
    sdk = await _written("sdk")
    ours = await _written("ours")
    assert ours == sdk
    assert ours.count(b"\n") == len(OUTGOING)


def test_split_lines_keeps_a_trailing_cr_for_the_next_read() -> None:
    buffer = bytearray(b'{"a":1}\r')
    assert split_lines(buffer) == []
    buffer += b'\n{"b":2}'
    assert split_lines(buffer) == ['{"a":1}\n']
    assert split_lines(buffer, final=True) == ['{"b":2}']
    assert buffer == bytearray()


async def test_router_stdio_front_relays_progress(tmp_path: Path) -> None:
    """The router's stdio front (asyncio pipes) end to end: a call with progress."""
    config = write_config(
        tmp_path / "stdio.yaml",
        [
            {
                "name": "demo",
                "command": PYTHON,
                "args": ["-m", "mcp_router.template", "--log-level", "WARNING"],
                "connect_timeout_seconds": 60,
            }
        ],
    )
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with router_stdio(config) as client:
        result = await client.call_tool(
            "demo_slow_echo", {"text": "piped", "seconds": 0.3}, progress_callback=on_progress
        )
        echoed = await client.call_tool("demo_echo", {"text": "é😀" * 1000})
    assert [c.text for c in result.content] == ["piped"]
    assert len(seen) == 3
    assert [c.text for c in echoed.content] == ["é😀" * 1000]
