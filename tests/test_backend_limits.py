"""Bounded backend output: a backend that sends too much never takes the router down with it.

A real router process (over HTTP) fronts two raw stdio backends (tests/servers/raw_stdio.py):
``attacker`` misbehaves on request, ``other`` answers at once. For each attack the test calls
``other`` in a loop meanwhile and samples the router's RSS from /proc, and asserts: the
attacking call fails fast with an error naming the limit and the backend (or the session is
restarted cleanly), the attacker serves calls again afterwards, ``other`` stays fast, and the
router's memory stays bounded. Over HTTP a FastMCP backend returns a result over the limit.
Payloads are sized for a shared 2-core machine (tens of MB, not hundreds).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from support import (
    PYTHON,
    SERVERS,
    child_env,
    free_port,
    router_cmd,
    spawn,
    wait_http,
    write_config,
)

pytestmark = pytest.mark.timeout(60)

RAW = str(SERVERS / "raw_stdio.py")
MB = 1024 * 1024
LIMIT = 4 * MB  # MCP_MAX_MESSAGE_BYTES for this router: small, so payloads stay light
ATTACK = 24 * MB
# Generous bounds for a loaded machine; the unbounded router took 9-75 s and GBs.
FAST_FAIL_SECONDS = 10.0
OTHER_P95_MS = 500.0
RSS_GROWTH_MB = 120.0


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` now, in MiB (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class RssSampler:
    """Samples a process's RSS every 20 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.base = rss_mb(pid)
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError, RuntimeError):
                self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> float:
        return self.peak - self.base


@contextlib.contextmanager
def router(tmp: Path, backends: list[dict[str, Any]], **env: str) -> Iterator[tuple[str, int]]:
    """A router process on a free port; yields (MCP URL, pid) once it is ready."""
    config = write_config(
        tmp / "limits.yaml",
        backends,
        routing={"request_timeout_seconds": 20, "retry": {"max_attempts": 1}},
    )
    port = free_port()
    log = (tmp / "router.log").open("w")
    cmd = router_cmd(config, "--transport", "http", "--port", str(port))
    with spawn(cmd, env=child_env(**env), stderr=log) as proc:
        wait_http(f"http://127.0.0.1:{port}/ready", 45, proc, status=200)
        yield f"http://127.0.0.1:{port}/mcp", proc.pid
    log.close()


def raw_backend(name: str) -> dict[str, Any]:
    return {"name": name, "command": PYTHON, "args": [RAW], "health_check": {"enabled": False}}


async def text_of(client: Client, tool: str, **arguments: Any) -> tuple[bool, str]:
    result = await client.session.call_tool(tool, arguments)
    return not result.is_error, " ".join(getattr(c, "text", "") for c in result.content)


async def attack(
    client: Client, pid: int, tool: str, **arguments: Any
) -> tuple[bool, str, float, list[float], RssSampler]:
    """Run the attacking call while timing ``other_echo`` calls; sample the router's RSS."""
    latencies: list[float] = []
    outcome: dict[str, Any] = {}
    for _ in range(3):  # warm: the first calls on a fresh router pay one-off costs
        await text_of(client, "other_echo", text="warm")

    async def attacker() -> None:
        start = time.monotonic()
        try:
            ok, text = await text_of(client, tool, **arguments)
        except Exception as exc:  # a JSON-RPC error is what a client sees for refused answers
            ok, text = False, str(exc)
        outcome.update(ok=ok, text=text, seconds=time.monotonic() - start)

    with RssSampler(pid) as sampler:
        async with anyio.create_task_group() as tg:
            tg.start_soon(attacker)
            while not outcome:
                start = time.perf_counter()
                ok, _ = await text_of(client, "other_echo", text="ping")
                assert ok
                latencies.append((time.perf_counter() - start) * 1000)
                await anyio.sleep(0.02)
    return outcome["ok"], outcome["text"], outcome["seconds"], latencies, sampler


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


@pytest.fixture(scope="module")
def stdio_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    tmp = tmp_path_factory.mktemp("limits")
    env = {
        "MCP_MAX_MESSAGE_BYTES": str(LIMIT),
        "MCP_BACKEND_STDERR_LINES_PER_SECOND": "20",
        "MCP_BACKEND_STDERR_BURST": "20",
    }
    with router(tmp, [raw_backend("attacker"), raw_backend("other")], **env) as (url, pid):
        yield url, pid, tmp / "router.log"


async def test_a_result_over_the_limit_fails_that_call_naming_the_limit_and_the_session_lives(
    stdio_router: tuple[str, int, Path],
) -> None:
    url, pid, _ = stdio_router
    async with Client(url, mode="legacy") as client:
        ok, text, seconds, latencies, rss = await attack(
            client, pid, "attacker_big_result", bytes=ATTACK
        )
        assert not ok
        assert "MCP_MAX_MESSAGE_BYTES" in text and "'attacker'" in text, text
        assert seconds < FAST_FAIL_SECONDS
        assert p95(latencies) < OTHER_P95_MS, latencies
        assert rss.growth < RSS_GROWTH_MB, (rss.base, rss.peak)
        # The session survived: the same backend answers the next call.
        assert await text_of(client, "attacker_echo", text="still here") == (True, "still here")


async def test_stdout_without_newline_restarts_the_session_and_other_backends_stay_fast(
    stdio_router: tuple[str, int, Path],
) -> None:
    url, pid, _ = stdio_router
    async with Client(url, mode="legacy") as client:
        ok, text, seconds, latencies, rss = await attack(
            client, pid, "attacker_stdout_flood", bytes=ATTACK
        )
        assert not ok
        assert seconds < FAST_FAIL_SECONDS, text
        assert p95(latencies) < OTHER_P95_MS, latencies
        assert rss.growth < RSS_GROWTH_MB, (rss.base, rss.peak)
        # A fresh session comes up and serves calls.
        deadline = time.monotonic() + 20
        while True:
            ok, text = await text_of(client, "attacker_echo", text="back")
            if ok or time.monotonic() > deadline:
                break
            await anyio.sleep(0.2)
        assert (ok, text) == (True, "back")


async def test_stderr_floods_are_cut_and_rate_limited_with_memory_bounded(
    stdio_router: tuple[str, int, Path],
) -> None:
    url, pid, log = stdio_router
    async with Client(url, mode="legacy") as client:
        ok, text, seconds, latencies, rss = await attack(
            client, pid, "attacker_stderr_flood", bytes=ATTACK
        )
        assert (ok, text) == (True, "flooded")
        assert seconds < FAST_FAIL_SECONDS
        assert p95(latencies) < OTHER_P95_MS, latencies
        assert rss.growth < RSS_GROWTH_MB, (rss.base, rss.peak)
        assert await text_of(client, "attacker_stderr_lines", count=5000) == (True, "logged")
        await anyio.sleep(1.5)  # the bucket refills: the next line passes, with the count
        await text_of(client, "attacker_stderr_lines", count=1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logged = log.read_text(errors="replace")
        if "lines dropped" in logged:
            break
        await anyio.sleep(0.2)
    assert "line cut at 8192 bytes" in logged
    assert "lines dropped: stderr rate limit" in logged
    # The 24 MB line is not in the log: only its first 8 KiB.
    assert len(logged) < 2 * MB


@pytest.fixture(scope="module")
def http_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """bulky.py over streamable HTTP (SSE events, JSON bodies) and legacy SSE; a raw one."""
    tmp = tmp_path_factory.mktemp("http-limits")
    ports = {"web": free_port(), "webjson": free_port(), "websse": free_port()}
    backends = [
        {
            "name": name,
            "url": f"http://127.0.0.1:{port}/{'sse' if name == 'websse' else 'mcp'}",
            "health_check": {"enabled": False},
        }
        for name, port in ports.items()
    ]
    with contextlib.ExitStack() as stack:
        for name, port in ports.items():
            transport = "sse" if name == "websse" else "http"
            cmd = [PYTHON, str(SERVERS / "bulky.py"), "--transport", transport]
            cmd += ["--port", str(port)] + (["--json-response"] if name == "webjson" else [])
            stack.enter_context(spawn(cmd, ready_url=f"http://127.0.0.1:{port}/healthz"))
        env = {"MCP_MAX_MESSAGE_BYTES": str(LIMIT)}
        with router(tmp, [*backends, raw_backend("other")], **env) as (url, pid):
            yield url, pid


@pytest.mark.parametrize("backend", ["web", "webjson"], ids=["sse-response", "json-response"])
async def test_an_http_result_over_the_limit_fails_with_the_limit_named_not_connection_closed(
    http_router: tuple[str, int], backend: str
) -> None:
    url, pid = http_router
    # The test's own SDK client would refuse an event over 1 MiB: lift that here.
    front = streamable_http_client(url, max_sse_event_size=None)
    async with Client(front, mode="legacy") as client:
        ok, text, seconds, latencies, _ = await attack(
            client, pid, f"{backend}_big", size=2 * LIMIT
        )
        assert not ok
        assert "MCP_MAX_MESSAGE_BYTES" in text and f"'{backend}'" in text, text
        assert "connection closed" not in text.lower()
        assert seconds < FAST_FAIL_SECONDS
        assert p95(latencies) < OTHER_P95_MS, latencies
        # Under the limit and over the SDK's own 1 MiB event cap (the text is sent twice:
        # as content and as structured content), it goes through, on the same session.
        ok, text = await text_of(client, f"{backend}_big", size=3 * MB // 2)
        assert ok and len(text) == 3 * MB // 2, text[:300]


def test_router_without_limits_env_uses_the_documented_default() -> None:
    from mcp_router.settings import RouterSettings

    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_")}
    proc = subprocess.run(
        [
            PYTHON,
            "-c",
            "from mcp_router.settings import RouterSettings as S; print(S().max_message_bytes)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(proc.stdout) == 16 * MB == RouterSettings.model_fields["max_message_bytes"].default


async def test_a_legacy_sse_event_over_the_sdk_cap_fails_that_call_and_the_session_lives(
    http_router: tuple[str, int],
) -> None:
    url, pid = http_router
    async with Client(streamable_http_client(url, max_sse_event_size=None), mode="legacy") as c:
        ok, text, seconds, latencies, _ = await attack(c, pid, "websse_big", size=2 * MB)
        assert not ok and "'websse'" in text and "1 MiB" in text, text
        assert seconds < FAST_FAIL_SECONDS and p95(latencies) < OTHER_P95_MS, latencies
        assert await text_of(c, "websse_echo", text="alive") == (True, "alive")
