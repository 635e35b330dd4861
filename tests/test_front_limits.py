"""Limits of the HTTP front an attacker on loopback could otherwise exhaust, no token needed:
header size and read time, sessions per client and in all, idle sessions; plus RFC 7235 bearer
parsing and metric labels drawn from the catalog.

Real router subprocesses (headers, sessions, auth) and an in-process router (metric labels).
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mcp_router.config.models import RouterConfig
from mcp_router.gateway.front_limits import with_header_limits
from mcp_router.gateway.server import build_router
from mcp_router.settings import load_settings
from support import PYTHON, SERVERS, RouterProcess, free_port, run_router, write_config

TOKENS = ["alpha-token-1", "beta-token-2", "gamma-token-3"]
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "limits-test", "version": "1"},
    },
}
ACCEPT = {"accept": "application/json, text/event-stream"}


def _basic_backend() -> dict[str, Any]:
    return {
        "name": "basic",
        "command": PYTHON,
        "args": [str(SERVERS / "basic.py"), "--transport", "stdio", "--name", "basic"],
        "connect_timeout_seconds": 60,  # a loaded machine may take long to start it
    }


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("limits") / "backends.yaml", [_basic_backend()])


@pytest.fixture(scope="module")
def header_router(config: Path) -> Iterator[RouterProcess]:
    env = {"MCP_AUTH_TOKENS": TOKENS[0], "MCP_HEADER_TIMEOUT_SECONDS": "1.5"}
    with run_router(config, config.parent / "headers.log", env=env, timeout=90) as router:
        yield router


@pytest.fixture(scope="module")
def session_router(config: Path) -> Iterator[RouterProcess]:
    env = {
        "MCP_AUTH_TOKENS": ",".join(TOKENS),
        "MCP_MAX_SESSIONS_PER_CLIENT": "3",
        "MCP_MAX_SESSIONS": "5",
        "MCP_SESSION_IDLE_SECONDS": "3",
    }
    with run_router(config, config.parent / "sessions.log", env=env, timeout=90) as router:
        yield router


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _probe(url: str, seconds: float) -> list[float]:
    """Latencies of back-to-back GETs of ``url`` for ``seconds`` (a new connection each)."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        with httpx2.Client(timeout=60) as http:
            assert http.get(url).status_code == 200
        latencies.append(time.monotonic() - t0)
    return latencies


def _huge_header(port: int, total: int, outcome: dict[str, Any]) -> None:
    """Send one request whose single header is ``total`` bytes; record what came back."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sent = 0
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ")
        chunk = b"a" * (1 << 20)
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
        sock.sendall(b"\r\n\r\n")
    except OSError as exc:  # the router closed the connection on us
        outcome["send_error"] = type(exc).__name__
    outcome["sent"] = sent
    with contextlib.suppress(OSError):
        outcome["answer"] = sock.recv(4096)
    sock.close()


def test_oversized_headers_get_431_and_other_clients_stay_fast(
    header_router: RouterProcess,
) -> None:
    port = int(header_router.base.rsplit(":", 1)[1])
    health = f"{header_router.base}/health"
    before = _probe(health, 2.0)
    rss_before = _rss_kib(header_router.proc.pid)
    outcomes: list[dict[str, Any]] = [{} for _ in range(4)]
    attackers = [
        threading.Thread(target=_huge_header, args=(port, 200 << 20, outcomes[i])) for i in range(4)
    ]
    for thread in attackers:
        thread.start()
    during = _probe(health, 3.0)
    for thread in attackers:
        thread.join(60)
    rss_after = _rss_kib(header_router.proc.pid)
    for outcome in outcomes:
        # refused after the first MiB or so, never read to the end
        assert outcome["sent"] < 32 << 20, outcome
        answer = outcome.get("answer", b"")
        assert not answer or answer.startswith(b"HTTP/1.1 431 "), answer
    assert any(o.get("answer", b"").startswith(b"HTTP/1.1 431 ") for o in outcomes), outcomes
    print(
        f"\n/health p50 {statistics.median(before) * 1000:.1f} ms before, "
        f"{statistics.median(during) * 1000:.1f} ms (max {max(during) * 1000:.0f} ms) during "
        f"4 x 200 MB header floods; RSS {rss_before // 1024} -> {rss_after // 1024} MiB"
    )
    assert max(during) < 3.0, during  # before the limit: 18.5 s
    assert rss_after - rss_before < 40 * 1024  # before the limit: +334 MB


def test_headers_just_under_the_limit_pass_and_over_it_get_431(
    header_router: RouterProcess,
) -> None:
    with httpx2.Client(timeout=30) as http:
        fine = http.get(f"{header_router.base}/health", headers={"x-pad": "a" * 60_000})
        assert fine.status_code == 200
        too_big = http.get(f"{header_router.base}/health", headers={"x-pad": "a" * 70_000})
        assert too_big.status_code == 431
        assert "MCP_MAX_HEADER_BYTES" in too_big.json()["error"]["message"]
        # many small headers count too: the limit is on the total
        many = {f"x-h{i}": "b" * 100 for i in range(700)}
        assert http.get(f"{header_router.base}/health", headers=many).status_code == 431


def test_slow_headers_get_408_after_the_header_timeout(header_router: RouterProcess) -> None:
    port = int(header_router.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        t0 = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(3):  # a byte now and then keeps no timer alive
            time.sleep(0.4)
            with contextlib.suppress(OSError):
                sock.sendall(b"X")
        answer = sock.recv(4096)
        waited = time.monotonic() - t0
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"MCP_HEADER_TIMEOUT_SECONDS" in answer
    assert 1.4 < waited < 10, waited
    # a connection that sends nothing at all is closed the same way
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        assert sock.recv(4096).startswith(b"HTTP/1.1 408 ")
    # and keep-alive requests are not affected: the timer is per request
    with httpx2.Client(timeout=10) as http:
        for _ in range(3):
            assert http.get(f"{header_router.base}/health").status_code == 200
            time.sleep(0.8)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer  {t}", "Bearer\t{t}", "bearer {t}", "BEARER \t  {t}"],
    ids=["two-spaces", "tab", "lowercase", "mixed-run"],
)
def test_bearer_accepts_any_run_of_spaces_after_the_scheme(
    header_router: RouterProcess, authorization: str
) -> None:
    headers = {**ACCEPT, "authorization": authorization.format(t=TOKENS[0])}
    response = httpx2.post(f"{header_router.url}", json=INIT, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    httpx2.delete(header_router.url, headers={**headers, "mcp-session-id": session}, timeout=30)


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer  wrong", "Basic abc"])
def test_bearer_without_a_valid_token_still_gets_401(
    header_router: RouterProcess, authorization: str
) -> None:
    headers = {**ACCEPT, "authorization": authorization}
    response = httpx2.post(header_router.url, json=INIT, headers=headers, timeout=30)
    assert response.status_code == 401


# ----------------------------------------------------------------------------- sessions


def _open(http: httpx2.Client, url: str, token: str) -> httpx2.Response:
    headers = {**ACCEPT, "authorization": f"Bearer {token}"}
    return http.post(url, json=INIT, headers=headers)


def _close(http: httpx2.Client, url: str, token: str, session: str) -> int:
    headers = {"authorization": f"Bearer {token}", "mcp-session-id": session}
    return http.delete(url, headers=headers).status_code


@contextlib.contextmanager
def _sessions(url: str) -> Iterator[tuple[httpx2.Client, list[tuple[str, str]]]]:
    """An HTTP client and the sessions a test opened, all deleted afterwards."""
    opened: list[tuple[str, str]] = []
    with httpx2.Client(timeout=30) as http:
        try:
            yield http, opened
        finally:
            for token, session in opened:
                _close(http, url, token, session)


def test_sessions_per_client_are_capped_and_a_deleted_session_frees_its_slot(
    session_router: RouterProcess,
) -> None:
    url = session_router.url
    alpha, beta = TOKENS[0], TOKENS[1]
    with _sessions(url) as (http, opened):
        for _ in range(3):
            response = _open(http, url, alpha)
            assert response.status_code == 200, response.text
            opened.append((alpha, response.headers["mcp-session-id"]))
        refused = _open(http, url, alpha)
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert "MCP_MAX_SESSIONS_PER_CLIENT" in error["message"] and "3" in error["message"]
        # another identity is not held up by alpha
        other = _open(http, url, beta)
        assert other.status_code == 200
        opened.append((beta, other.headers["mcp-session-id"]))
        # alpha deletes one: its slot is free at once
        token, session = opened.pop(0)
        assert _close(http, url, token, session) == 200
        again = _open(http, url, alpha)
        assert again.status_code == 200, again.text
        opened.append((alpha, again.headers["mcp-session-id"]))


def test_one_client_flooding_initialize_gets_only_its_share(
    session_router: RouterProcess,
) -> None:
    url = session_router.url
    alpha, beta = TOKENS[0], TOKENS[1]
    rss_before = _rss_kib(session_router.proc.pid)
    statuses: dict[int, int] = {}
    with _sessions(url) as (http, opened):
        t0 = time.monotonic()
        for _ in range(500):
            response = _open(http, url, alpha)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                opened.append((alpha, response.headers["mcp-session-id"]))
        elapsed = time.monotonic() - t0
        rss_after = _rss_kib(session_router.proc.pid)
        other = _open(http, url, beta)
        assert other.status_code == 200
        opened.append((beta, other.headers["mcp-session-id"]))
    print(
        f"\n500 initializes by one token in {elapsed:.1f} s: {statuses}; "
        f"RSS {rss_before // 1024} -> {rss_after // 1024} MiB; another token still gets in"
    )
    # 3 at a time; idle reaping (3 s here) frees slots while the flood goes on
    assert set(statuses) == {200, 429}
    assert 3 <= statuses[200] <= 3 * (1 + int(elapsed / 3)), (statuses, elapsed)
    assert rss_after - rss_before < 20 * 1024


def test_total_session_cap_gives_503_naming_the_limit(session_router: RouterProcess) -> None:
    url = session_router.url
    with _sessions(url) as (http, opened):
        for token in (TOKENS[0], TOKENS[0], TOKENS[0], TOKENS[1], TOKENS[1]):
            response = _open(http, url, token)
            assert response.status_code == 200, response.text
            opened.append((token, response.headers["mcp-session-id"]))
        refused = _open(http, url, TOKENS[2])
        assert refused.status_code == 503
        assert "MCP_MAX_SESSIONS" in refused.json()["error"]["message"]
        assert "(5," in refused.json()["error"]["message"]
        token, session = opened.pop()
        assert _close(http, url, token, session) == 200
        admitted = _open(http, url, TOKENS[2])
        assert admitted.status_code == 200
        opened.append((TOKENS[2], admitted.headers["mcp-session-id"]))


def test_idle_sessions_are_reaped_and_free_their_slots(session_router: RouterProcess) -> None:
    url = session_router.url
    gamma = TOKENS[2]
    with _sessions(url) as (http, opened):
        stale: list[str] = []
        for _ in range(3):
            response = _open(http, url, gamma)
            assert response.status_code == 200
            stale.append(response.headers["mcp-session-id"])
        assert _open(http, url, gamma).status_code == 429
        time.sleep(6)  # MCP_SESSION_IDLE_SECONDS=3, and a loaded machine
        fresh = _open(http, url, gamma)
        assert fresh.status_code == 200, fresh.text
        opened.append((gamma, fresh.headers["mcp-session-id"]))
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        headers = {
            **ACCEPT,
            "authorization": f"Bearer {gamma}",
            "mcp-session-id": stale[0],
            "mcp-protocol-version": "2025-11-25",
        }
        assert http.post(url, json=ping, headers=headers).status_code == 404


# ----------------------------------------------------------------------------- h11 too


def test_header_limits_hold_on_uvicorns_h11_protocol_too() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    for base in (H11Protocol, HttpToolsProtocol):
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            http=with_header_limits(base, 16 * 1024, 1.0),
            h11_max_incomplete_event_size=16 * 1024,
            lifespan="off",
            log_config=None,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not server.started:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            url = f"http://127.0.0.1:{port}/"
            with httpx2.Client(timeout=10) as http:
                assert http.get(url, headers={"x-pad": "a" * 15_000}).status_code == 200
                assert http.get(url, headers={"x-pad": "a" * 17_000}).status_code == 431
                # a body far larger than the header limit is not counted as headers
                assert http.post(url, content=b"z" * 500_000).status_code == 200
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                assert sock.recv(4096).startswith(b"HTTP/1.1 408 "), base
        finally:
            server.should_exit = True
            thread.join(10)


# ----------------------------------------------------------------------------- metrics


def test_metric_labels_come_from_the_catalog_not_from_clients() -> None:
    config = RouterConfig.model_validate({"backends": [_basic_backend()]})
    router = build_router(config, load_settings())

    async def scenario() -> None:
        await router.start()
        try:
            index = router.manager.index
            (template,) = [t for t in index.templates if "items" in t]
            listed = next(iter(index.resources))
            async with Client(router.server._mcp_server, mode="legacy") as client:
                for i in range(300):
                    instance = template.replace("{id}", str(i))
                    await client.session.read_resource(instance)
                    with contextlib.suppress(Exception):
                        await client.session.read_resource(f"nowhere://made-up/{i}")
                    with contextlib.suppress(Exception):
                        await client.session.read_resource(listed.rstrip("/") + f"-{i}")
                    await client.session.call_tool(f"no_such_tool_{i}", {})
                await client.session.read_resource(listed)
            catalog.update({"<unknown>", *index.templates, *index.resources, *index.tools})
            rendered.append(router.metrics.render()[0].decode())
        finally:
            await router.stop()

    catalog: set[str] = set()
    rendered: list[str] = []
    anyio.run(scenario)
    text = rendered[0]
    series = [line for line in text.splitlines() if line.startswith("mcp_router_requests_total{")]
    names = {line.split('name="', 1)[1].split('"', 1)[0] for line in series}
    assert names <= catalog, names
    assert len(series) <= 6, series
    assert any("items" in name for name in names)  # template reads: labelled by the template
    assert len(text) < 20_000


def test_sse_front_caps_open_streams_per_client(config: Path) -> None:
    env = {"MCP_MAX_SESSIONS_PER_CLIENT": "2"}
    log = config.parent / "sse.log"
    with run_router(config, log, transport="sse", env=env, timeout=90) as router:
        url = f"{router.base}/sse"
        with httpx2.Client(timeout=30) as http, contextlib.ExitStack() as streams:
            for _ in range(2):
                stream = streams.enter_context(http.stream("GET", url))
                assert stream.status_code == 200
            refused = http.get(url)
            assert refused.status_code == 429
            assert "MCP_MAX_SESSIONS_PER_CLIENT" in refused.json()["error"]["message"]
        # the streams are closed: their slots are free again
        deadline = time.monotonic() + 10
        while True:
            with httpx2.Client(timeout=30) as http, http.stream("GET", url) as stream:
                if stream.status_code == 200:
                    break
            assert time.monotonic() < deadline, "slots not freed"
            time.sleep(0.2)
