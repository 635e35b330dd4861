"""Fuzzing the HTTP front: over 10,000 request bodies and header shapes, no 5xx, no hang, no
crash, and the router still answers afterwards.

- 8,400 requests in two parts (fuzzed JSON-RPC bodies, methods, ids, params, and header values:
  Authorization, session id, protocol version, Accept, Content-Type) go through the router's
  whole ASGI stack in process (body limit, Host/Origin guard, session limits, the SDK's
  transport, FastMCP, the routing middleware, a real stdio backend), each bounded in time;
- 1,600 raw header shapes (odd names and values, bare LF, folding, NUL bytes, huge counts,
  sizes around ``MCP_MAX_HEADER_BYTES``) go to a live router process over its socket, where
  uvicorn's parser and the header limits see them.

``derandomize=True``: the same examples every run, so a failure reproduces.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_router.config.models import RouterConfig
from mcp_router.gateway.http import build_http_app
from mcp_router.gateway.server import build_router
from mcp_router.settings import load_settings
from support import PYTHON, SERVERS, RouterProcess, run_router, write_config

BODY_EXAMPLES = 4_200  # per part: two parts, so each stays within the test timeout
HEADER_EXAMPLES = 1_600
PER_REQUEST_SECONDS = 10.0


def _backend() -> dict[str, Any]:
    return {
        "name": "fz",
        "command": PYTHON,
        "args": [str(SERVERS / "faulty.py"), "--transport", "stdio", "--name", "fz"],
        "namespace": "fz",
        "connect_timeout_seconds": 60,
    }


# ----------------------------------------------------------------------------- generators
#
# Hypothesis drives the fuzz through ``st.randoms()`` (derandomized: the same stream every run)
# and each example expands into a batch of requests: drawing every request field by field
# costs ~10 ms per request on a loaded 2-core machine, this costs well under one.

BATCH = 20
_JUNK_TEXT = ["", " ", "\x00", "é", "💥", "a" * 300, "../../etc/passwd", "{", "null", "${X}"]
_JUNK = [None, True, False, 0, -1, 2**63, 1.5, -0.0, "", "x", [], {}, [1, [2]], {"a": {"b": 1}}]
_TEMPLATES: list[Any] = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "fuzz", "version": "1"},
        },
    },
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"cursor": "abc"}},
    {
        "jsonrpc": "2.0",
        "id": 4,
        "method": "tools/call",
        "params": {"name": "fz_work", "arguments": {"x": 1}},
    },
    {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {"name": "fz_fail", "arguments": {"reason": "r"}},
    },
    {
        "jsonrpc": "2.0",
        "id": 6,
        "method": "tools/call",
        "params": {"name": "router_get_routing_info", "arguments": {"tool_name": "fz_work"}},
    },
    {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "no_such_tool"}},
    {"jsonrpc": "2.0", "id": 8, "method": "resources/list"},
    {"jsonrpc": "2.0", "id": 9, "method": "resources/templates/list"},
    {"jsonrpc": "2.0", "id": 10, "method": "resources/read", "params": {"uri": "fz://x/y"}},
    {"jsonrpc": "2.0", "id": 11, "method": "resources/subscribe", "params": {"uri": "a://b"}},
    {"jsonrpc": "2.0", "id": 12, "method": "prompts/list"},
    {"jsonrpc": "2.0", "id": 13, "method": "prompts/get", "params": {"name": "p", "arguments": {}}},
    {
        "jsonrpc": "2.0",
        "id": 14,
        "method": "completion/complete",
        "params": {
            "ref": {"type": "ref/prompt", "name": "p"},
            "argument": {"name": "a", "value": "b"},
        },
    },
    {"jsonrpc": "2.0", "id": 15, "method": "logging/setLevel", "params": {"level": "debug"}},
    {"jsonrpc": "2.0", "id": 16, "method": "ping"},
    {"jsonrpc": "2.0", "id": 17, "method": "server/discover", "params": {}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 4}},
    {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"},
    {"jsonrpc": "2.0", "id": 18, "result": {}},
    {"jsonrpc": "2.0", "id": 19, "error": {"code": -1, "message": "m"}},
    {"jsonrpc": "2.0", "id": 20, "method": "nope/x", "params": {}},
]


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()


def _junk(rnd: random.Random) -> Any:
    return rnd.choice(_JUNK + _JUNK_TEXT)


def _mutate(value: Any, rnd: random.Random, depth: int = 0) -> Any:
    """A copy of a JSON value with some leaves replaced, keys dropped or added."""
    if rnd.random() < 0.08:
        return _junk(rnd)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if rnd.random() < 0.07:
                continue
            out[key] = _mutate(item, rnd, depth + 1) if depth < 4 else item
        if rnd.random() < 0.07:
            out[rnd.choice(["id", "method", "params", "jsonrpc", "_meta", "x"])] = _junk(rnd)
        return out
    if isinstance(value, list):
        return [_mutate(item, rnd, depth + 1) for item in value]
    return value


def _serialise(message: Any, rnd: random.Random) -> bytes:
    data = json.dumps(message).encode()
    roll = rnd.random()
    if roll < 0.08:
        return data[: rnd.randrange(len(data) + 1)]  # truncated
    if roll < 0.14:
        i = rnd.randrange(len(data))
        return data[:i] + bytes([rnd.randrange(256)]) + data[i + 1 :]  # one byte flipped
    if roll < 0.18:
        return rnd.randbytes(rnd.randrange(200))  # not JSON at all
    if roll < 0.22:
        return b"\xef\xbb\xbf" + data  # BOM
    if roll < 0.26:
        return data + data  # two documents
    return data


def fuzz_request(rnd: random.Random, session: str) -> tuple[str, bytes, dict[str, str]]:
    """One fuzzed request to /mcp: (method, body, headers)."""
    if rnd.random() < 0.1:
        message: Any = [_mutate(rnd.choice(_TEMPLATES), rnd) for _ in range(rnd.randrange(4))]
    else:
        message = _mutate(rnd.choice(_TEMPLATES), rnd)
    body = _serialise(message, rnd)
    # Mostly a well-formed request of the open session, so most bodies reach the MCP layer.
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-session-id": session,
        "mcp-protocol-version": "2025-11-25",
    }
    choices: dict[str, list[Any]] = {
        "authorization": ["Bearer", "Bearer  x", "bearer\tx", "Basic e30=", "Bearer " + "t" * 500],
        "mcp-session-id": ["nope", "", "\x7f", "a" * 200],
        "mcp-protocol-version": ["2025-11-25", "2026-07-28", "2024-11-05", "1999-01-01", "x"],
        "accept": ["text/event-stream", "application/json", "*/*", "", "text/html"],
        "content-type": ["text/plain", "", "application/json; charset=latin-1", "multipart/x"],
        "mcp-method": ["tools/call", "tools/list", "initialize", "x", ""],
        "mcp-name": ["fz_work", "nope", "", "a" * 100],
        "origin": ["http://127.0.0.1:8000", "http://evil.example", "null", ""],
    }
    for name, values in choices.items():
        if rnd.random() < 0.06:
            headers[name] = rnd.choice(values)
    for name in ("accept", "mcp-session-id", "mcp-protocol-version"):
        if rnd.random() < 0.04:
            headers.pop(name)
    method = rnd.choice(["POST"] * 12 + ["GET", "DELETE", "PUT"])
    if method == "DELETE" and headers.get("mcp-session-id") == session:
        headers["mcp-session-id"] = "not-" + session  # the open session must outlive the fuzz
    return method, body, headers


# ----------------------------------------------------------------------------- in process


class AsgiClient:
    """Calls an ASGI app directly: one request, its status and body, bounded in time."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        raw = [(b"host", b"127.0.0.1:8000")]
        raw += [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
        if body:
            raw.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": raw,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        done = anyio.Event()
        sent_body = False
        status = 0
        chunks: list[bytes] = []
        response_headers: dict[str, str] = {}

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", []):
                    response_headers[k.decode().lower()] = v.decode("latin-1")
                stream = response_headers.get("content-type", "").startswith("text/event-stream")
                if method == "GET" and stream:
                    done.set()  # a standalone SSE stream never ends by itself: hang up
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        with anyio.fail_after(PER_REQUEST_SECONDS):
            await self.app(scope, receive, send)
        done.set()
        return status, b"".join(chunks), response_headers


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run the ASGI app's lifespan (startup before, shutdown after)."""
    to_app: anyio.abc.ObjectSendStream[dict[str, Any]]
    to_app, from_test = anyio.create_memory_object_stream[dict[str, Any]](4)
    to_test, from_app = anyio.create_memory_object_stream[dict[str, Any]](4)

    async def run() -> None:
        await app(
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
            from_test.receive,
            to_test.send,
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await to_app.send({"type": "lifespan.startup"})
        with anyio.fail_after(30):
            started = await from_app.receive()
        assert started["type"] == "lifespan.startup.complete", started
        try:
            yield
        finally:
            await to_app.send({"type": "lifespan.shutdown"})
            with anyio.fail_after(30):
                await from_app.receive()


def _init() -> bytes:
    return _dump(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "fuzz", "version": "1"},
            },
        }
    )


def _sse_messages(body: bytes) -> list[Any]:
    messages: list[Any] = []
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("data:") and line[5:].strip():
            messages.append(json.loads(line[5:]))
    if not messages and body.strip().startswith(b"{"):
        messages.append(json.loads(body))
    return messages


_METHODS = ["POST"] * 9 + ["GET", "DELETE"]
MCP = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.mark.parametrize("part", [1, 2])
def test_fuzzed_bodies_and_headers_never_get_5xx_or_hang(part: int) -> None:
    config = RouterConfig.model_validate({"backends": [_backend()]})
    # the fuzz opens sessions from one address: room for them
    settings_ = load_settings(
        transport="http", port=8000, max_sessions=20_000, max_sessions_per_client=20_000
    )
    router = build_router(config, settings_)
    app = build_http_app(router)
    client = AsgiClient(app)
    statuses: dict[int, int] = {}

    async def scenario() -> None:
        async with lifespan(app):
            with anyio.fail_after(90):
                await router.ready.wait()
            status, _, headers = await client.request("POST", "/mcp", _init(), MCP)
            assert status == 200
            session = headers["mcp-session-id"]
            note = _dump({"jsonrpc": "2.0", "method": "notifications/initialized"})
            await client.request("POST", "/mcp", note, {**MCP, "mcp-session-id": session})

            async def batch(rnd: random.Random) -> list[Any]:
                # a session of its own per batch: a fuzzed message may end the session it uses
                status, _, opened = await client.request("POST", "/mcp", _init(), MCP)
                assert status == 200
                mine = opened["mcp-session-id"]
                await client.request("POST", "/mcp", note, {**MCP, "mcp-session-id": mine})
                requests = [fuzz_request(rnd, mine) for _ in range(BATCH)]
                bad: list[Any] = []

                async def send(method: str, body: bytes, headers: dict[str, str]) -> None:
                    try:
                        status, text, _ = await client.request(method, "/mcp", body, headers)
                    except TimeoutError:  # a hang: no answer within PER_REQUEST_SECONDS
                        status, text = -1, b"(no answer: hang)"
                    statuses[status] = statuses.get(status, 0) + 1
                    if not 0 < status < 500:
                        bad.append((method, body, headers, status, text[:300]))

                # one after the other: concurrent requests reusing a JSON-RPC id in one session
                # are a client error (the SDK may hand one answer to the other)
                for request in requests:
                    await send(*request)
                return bad

            @settings(
                max_examples=BODY_EXAMPLES // BATCH,
                derandomize=True,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(rnd=st.randoms(use_true_random=False))
            def one(rnd: random.Random) -> None:
                # each part of the fuzz gets its own stream of examples
                seeded = random.Random(f"{part}-{rnd.getrandbits(64)}")
                bad = anyio.from_thread.run(batch, seeded)
                assert not bad, bad

            t0 = time.monotonic()
            await anyio.to_thread.run_sync(one)
            elapsed = time.monotonic() - t0
            # still answering: a fresh session lists tools and calls one
            status, _, headers = await client.request("POST", "/mcp", _init(), MCP)
            assert status == 200
            fresh = {
                **MCP,
                "mcp-session-id": headers["mcp-session-id"],
                "mcp-protocol-version": "2025-11-25",
            }
            await client.request("POST", "/mcp", note, fresh)
            call = _dump(
                {
                    "jsonrpc": "2.0",
                    "id": 7,
                    "method": "tools/call",
                    "params": {"name": "fz_work", "arguments": {"x": 42}},
                }
            )
            status, body, _ = await client.request("POST", "/mcp", call, fresh)
            assert status == 200
            (answer,) = _sse_messages(body)
            assert answer["result"]["structuredContent"]["x"] == 42
            print(f"\n{sum(statuses.values())} fuzzed requests in {elapsed:.1f} s: {statuses}")

    anyio.run(scenario)
    assert sum(statuses.values()) >= BODY_EXAMPLES


# ----------------------------------------------------------------------------- raw headers

_ODD_LINES = [
    b"Content-Length: -1",
    b"Content-Length: 99999999999999999999",
    b"Content-Length: 1\r\nContent-Length: 2",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Host:",
    b"Host: evil.example.com",
    b"Authorization: Bearer",
    b"Authorization: Bearer \t\t x",
    b"Expect: 100-continue",
    b"Connection: upgrade\r\nUpgrade: websocket",
    b"mcp-session-id: \x00\x01",
    b" folded: continuation",
    b"no-colon-at-all",
    b": empty-name",
    b"bad name: v",
    b"x-\xff: \xfe",
]


def raw_request(rnd: random.Random) -> bytes:
    """One raw HTTP/1.x request with an odd request line and header shapes."""
    eol = rnd.choice([b"\r\n"] * 4 + [b"\n"])
    method = rnd.choice([b"GET", b"POST", b"DELETE", b"PUT", b"OPTIONS", b"BREW", b""])
    path = rnd.choice([b"/mcp", b"/health", b"/ready", b"/metrics", b"/status", b"/x", b"*", b""])
    version = rnd.choice([b"HTTP/1.1"] * 4 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9", b""])
    lines = [method + b" " + path + b" " + version, b"Host: 127.0.0.1"]
    for _ in range(rnd.randrange(8)):
        roll = rnd.random()
        if roll < 0.4:
            name = bytes(rnd.choice(b"abcxyz-_019") for _ in range(rnd.randrange(1, 16)))
            value = rnd.randbytes(rnd.randrange(60)).replace(b"\r", b"").replace(b"\n", b"")
            lines.append(name + b": " + value)
        elif roll < 0.7:
            lines.append(rnd.choice(_ODD_LINES))
        elif roll < 0.85:
            lines.append(b"x-big: " + b"a" * rnd.randrange(1, 80_000))  # around the limit
        else:
            lines += [b"x-n%d: v" % i for i in range(rnd.randrange(800))]  # the total counts
    body = rnd.randbytes(rnd.randrange(64))
    return eol.join(lines) + eol + eol + body


@pytest.fixture(scope="module")
def live_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    folder = tmp_path_factory.mktemp("fuzz")
    config = write_config(folder / "backends.yaml", [_backend()])
    env = {"MCP_HEADER_TIMEOUT_SECONDS": "2"}
    with run_router(config, folder / "router.log", env=env, timeout=90) as router:
        yield router


def test_fuzzed_header_shapes_never_get_5xx_or_hang(live_router: RouterProcess) -> None:
    port = int(live_router.base.rsplit(":", 1)[1])
    statuses: dict[bytes, int] = {}

    def send(data: bytes) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=PER_REQUEST_SECONDS) as sock:
            with contextlib.suppress(OSError):
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            answer = b""
            with contextlib.suppress(ConnectionResetError):
                answer = sock.recv(64)
        code = answer[9:12] if answer.startswith(b"HTTP/1.") else b"closed"
        statuses[code] = statuses.get(code, 0) + 1
        assert not code.startswith(b"5"), (data[:300], answer)

    @settings(
        max_examples=HEADER_EXAMPLES // BATCH,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(rnd=st.randoms(use_true_random=False))
    def one(rnd: random.Random) -> None:
        for _ in range(BATCH):
            send(raw_request(rnd))

    t0 = time.monotonic()
    one()
    elapsed = time.monotonic() - t0
    print(f"\n{sum(statuses.values())} raw header shapes in {elapsed:.1f} s: {statuses}")
    assert live_router.proc.poll() is None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 200 ")
