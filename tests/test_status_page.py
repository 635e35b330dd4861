"""The status page: ``/status`` (HTML + inline JS) and ``/status.json``.

A real router (HTTP, with ``MCP_AUTH_TOKENS``) runs in front of one healthy stdio backend and
one unreachable HTTP backend whose headers carry a secret. The page is loaded in headless
Chromium (``apt-get install -y chromium``; the browser test is skipped only when
``/usr/bin/chromium`` is absent) and checked after its script ran.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_router import secrets
from mcp_router.config.models import RouterConfig
from mcp_router.gateway.status import CallStats, status_html
from mcp_router.routing.forwarder import CallRecord
from support import child_env, fastmcp_server, free_port, run_router, write_config

pytestmark = pytest.mark.timeout(90)

TOKEN = "status-test-token-123"
SECRET = "sup3r-secret-header-value"
CHROMIUM = "/usr/bin/chromium"


# ----------------------------------------------------------------------------- unit


def _record(
    backend: str | None, ms: float, outcome: str = "success", error: str = ""
) -> CallRecord:
    return CallRecord("tool", "x_tool", backend, outcome, 1, 0, ms, [error] if error else [])


def test_call_stats_percentiles_and_ring_buffer() -> None:
    stats = CallStats(window=5, errors=2)
    for ms in [100, 1, 2, 3, 4, 5]:  # the 100 ms call falls out of the window
        stats.observe(_record("a", ms))
    stats.observe(_record("a", 7, outcome="tool_error"))  # the backend answered: counts
    assert stats.latency("a") == {"p50_ms": 4, "p95_ms": 7, "samples": 5}
    assert stats.calls("a") == 7
    assert stats.latency("b") == {"p50_ms": None, "p95_ms": None, "samples": 0}


def _config_with_secret(value: str) -> RouterConfig:
    return RouterConfig.model_validate(
        {"backends": [{"name": "a", "url": "http://127.0.0.1:1/mcp", "headers": {"X-K": value}}]}
    )


def test_call_stats_keep_recent_failures_redacted() -> None:
    stats = CallStats(window=5, errors=2)
    stats.observe(_record("a", 9, "error", "backend 'a': first"))
    stats.observe(_record("a", 9, "error", "backend 'a': token abc-secret refused"))
    stats.observe(_record("a", 9, "error", "backend 'a': third, abc-secret again"))
    stats.observe(_record(None, 0, "no_backend", "no healthy backend"))
    owner = object()
    secrets.install(owner, _config_with_secret("abc-secret"))
    try:
        errors = stats.recent_errors("a")
    finally:
        secrets.uninstall(owner)
    assert [e["message"] for e in errors] == [
        "backend 'a': third, *** again",
        "backend 'a': token *** refused",
    ]
    assert stats.latency("a")["samples"] == 0  # failed calls are not latency samples
    assert stats.recent_errors("(none)")[0]["outcome"] == "no_backend"


def test_page_is_package_data_not_a_python_string() -> None:
    # hatchling puts every file under src/mcp_router into the wheel; the page is read from there
    page = resources.files("mcp_router.gateway").joinpath("static/status.html")
    assert page.is_file()
    assert status_html() == page.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def router_base(module_tmp: Path) -> Iterator[str]:
    stdio = fastmcp_server("basic", "stdio")
    config = write_config(
        module_tmp / "status.yaml",
        [
            {"name": "good", "command": stdio[0], "args": [*stdio[1:], "--name", "good"]},
            {
                "name": "down",
                "url": f"http://127.0.0.1:{free_port()}/mcp",
                "headers": {"Authorization": f"Bearer {SECRET}"},
                "connect_timeout_seconds": 1,
            },
        ],
    )
    with run_router(config, env=child_env(MCP_AUTH_TOKENS=TOKEN)) as router:
        yield router.base


@asynccontextmanager
async def _client(base: str) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    async with (
        http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy") as c,
    ):
        yield c


def test_status_needs_a_token(router_base: str) -> None:
    for path in ("/status", "/status.json"):
        assert httpx2.get(f"{router_base}{path}", timeout=5).status_code == 401
        bad = httpx2.get(f"{router_base}{path}?token=wrong", timeout=5)
        assert bad.status_code == 401
        assert bad.headers["www-authenticate"].startswith("Bearer")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx2.get(f"{router_base}{path}", headers=headers, timeout=5).status_code == 200
        assert httpx2.get(f"{router_base}{path}?token={TOKEN}", timeout=5).status_code == 200
    assert httpx2.get(f"{router_base}/health", timeout=5).status_code == 200


def test_status_page_is_self_contained(router_base: str) -> None:
    page = httpx2.get(f"{router_base}/status?token={TOKEN}", timeout=5)
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<style>" in html and "<script>" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no external assets
    assert "status.json" in html and "2000" in html  # refreshes itself every 2 s


async def test_status_json_shows_health_latency_and_errors(router_base: str) -> None:
    async with _client(router_base) as client:
        for _ in range(5):
            result = await client.call_tool("good_whoami", {})
            assert result.content[0].text == "good"  # type: ignore[union-attr]
    response = httpx2.get(f"{router_base}/status.json?token={TOKEN}", timeout=5)
    assert SECRET not in response.text
    data = response.json()
    assert data["ready"] is True
    backends = {b["name"]: b for b in data["backends"]}
    good, down = backends["good"], backends["down"]
    assert good["state"] == "connected" and good["healthy"] is True
    assert good["circuit_state"] == "closed"
    assert good["tools"] == 6
    assert good["calls"] >= 5 and good["samples"] >= 5
    assert 0 < good["p50_ms"] <= good["p95_ms"]
    assert down["state"] != "connected" and down["healthy"] is False
    assert down["last_error"]
    assert down["p50_ms"] is None


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")
def test_page_renders_in_headless_chromium(router_base: str, tmp_path: Path) -> None:
    def chromium(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=5000",
                *args,
                f"{router_base}/status?token={TOKEN}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    dom = chromium("--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-loaded="true"' in html, html[-3000:]  # the script fetched status.json
    rows = dict(re.findall(r'<tr data-backend="([^"]+)">(.*?)</tr>', html, re.S))
    assert set(rows) == {"good", "down"}
    assert '<span class="pill ok">connected</span>' in rows["good"]
    assert '<span class="pill ok">closed</span>' in rows["good"]
    assert '<span class="pill ok">connected</span>' not in rows["down"]
    assert '<span class="pill bad">unhealthy</span>' in rows["down"]
    assert '<ul class="errors">' in rows["down"]  # its connection error is shown
    assert "tools: " in html and "ready: yes" in html
    assert SECRET not in html

    shot = tmp_path / "status.png"
    started = time.monotonic()
    result = chromium(f"--screenshot={shot}", "--window-size=1200,800")
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 5000
    assert time.monotonic() - started < 60
