"""Start-up of the HTTP front: the port opens at once, "listening on" means it, /ready waits for
discovery, an early request gets the full catalog, and the README's wait-for-ready snippet works.

Real router processes; one backend answers at once (faulty.py over stdio), another accepts TCP
connections and never answers, so discovery takes its whole connect timeout.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from support import (
    PYTHON,
    ROOT,
    SERVERS,
    child_env,
    free_port,
    kill_group,
    router_cmd,
    write_config,
)

SILENT_CONNECT_TIMEOUT = 6.0


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a backend stuck at start-up)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def _config(tmp_path: Path, silent_port: int) -> Path:
    fast = {
        "name": "fast",
        "command": PYTHON,
        "args": [str(SERVERS / "faulty.py"), "--transport", "stdio", "--name", "fast"],
        "namespace": "f",
        "connect_timeout_seconds": 60,  # a loaded machine may take long to start it
    }
    stuck = {
        "name": "stuck",
        "url": f"http://127.0.0.1:{silent_port}/mcp",
        "connect_timeout_seconds": SILENT_CONNECT_TIMEOUT,
    }
    return write_config(tmp_path / "backends.yaml", [fast, stuck])


def test_port_opens_before_discovery_and_early_requests_wait_for_it(
    tmp_path: Path, silent_port: int
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        router_cmd(_config(tmp_path, silent_port), "--transport", "http", "--port", str(port)),
        env=child_env(MCP_WATCH_CONFIG="false"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    listening: dict[str, Any] = {}

    def read_log() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "listening on" in line and "url" not in listening:
                listening["url"] = line.split("listening on", 1)[1].strip()
                try:  # the moment the line is printed, the port must take connections
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                    listening["connectable"] = True
                except OSError as exc:
                    listening["connectable"] = exc

    threading.Thread(target=read_log, daemon=True).start()
    readiness: list[tuple[float, int, dict[str, Any]]] = []
    try:
        t0 = time.monotonic()
        with httpx2.Client(timeout=10) as http:
            while True:
                assert proc.poll() is None, "router exited"
                assert time.monotonic() - t0 < 30, "port never opened"
                try:
                    http.get(f"{base}/health")
                    break
                except httpx2.HTTPError:
                    time.sleep(0.05)
            opened = time.monotonic()

            async def early_list() -> list[str]:
                async with Client(f"{base}/mcp", mode="legacy") as client:
                    return [t.name for t in (await client.session.list_tools()).tools]

            box: list[list[str]] = []
            lister = threading.Thread(target=lambda: box.append(anyio.run(early_list)))
            lister.start()
            while time.monotonic() - opened < 90:
                response = http.get(f"{base}/ready")
                readiness.append((time.monotonic(), response.status_code, response.json()))
                if response.status_code == 200:
                    break
                time.sleep(0.1)
            lister.join(90)
    finally:
        kill_group(proc)
    assert listening.get("url") == f"{base}/mcp"
    assert listening.get("connectable") is True, listening
    first = readiness[0]
    assert first[1] == 503 and first[2]["reason"] == "discovery in progress", first
    assert first[2]["discovery_done"] is False
    last = readiness[-1]
    assert last[1] == 200 and last[2]["ready"] is True and last[2]["connected"] == 1, last
    # the port was open well before discovery (held up by the stuck backend) ended
    assert last[0] - opened > SILENT_CONNECT_TIMEOUT / 2
    # the list sent before discovery ended waited for it: the fast backend's tools are there
    assert box and "f_work" in box[0] and "f_slow" in box[0], box


def _readme_wait_line() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^until curl -sf localhost:8000/ready; do sleep 0\.2; done.*$", readme, re.M)
    assert match, "README's first snippet waits for /ready"
    return match.group(0)


def test_readme_wait_for_ready_snippet_works_against_mcp_router_http(tmp_path: Path) -> None:
    port = free_port()
    wait_line = _readme_wait_line().replace("localhost:8000", f"localhost:{port}")
    mcp_router = Path(sys.executable).with_name("mcp-router")
    # the built-in default config's demo backend, with room for a loaded machine's slow start
    demo = {
        "name": "demo",
        "command": PYTHON,
        "args": ["-m", "mcp_router.template"],
        "namespace": "demo",
        "connect_timeout_seconds": 60,
    }
    config = write_config(tmp_path / "backends.yaml", [demo])
    proc = subprocess.Popen(
        [str(mcp_router), "--config", str(config), "--transport", "http", "--port", str(port)],
        env=child_env(MCP_WATCH_CONFIG="false"),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        waited = subprocess.run(
            ["bash", "-c", wait_line], capture_output=True, text=True, timeout=120
        )
        assert waited.returncode == 0, waited.stderr
        assert '"ready":true' in waited.stdout

        async def first_client() -> tuple[list[str], str]:
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                names = [t.name for t in (await client.session.list_tools()).tools]
                result = await client.session.call_tool("demo_echo", {"text": "hi"})
                return names, result.content[0].text  # type: ignore[union-attr]

        names, text = anyio.run(first_client)
    finally:
        kill_group(proc)
    assert "demo_echo" in names
    assert "hi" in text
