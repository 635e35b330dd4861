"""Test support: real processes on loopback, bounded in time, always cleaned up."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx2
import yaml
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent
SERVERS = Path(__file__).resolve().parent / "servers"
PYTHON = sys.executable
NODE_BIN = ROOT / "node_modules" / ".bin"
EVERYTHING = NODE_BIN / "mcp-server-everything"


def free_port() -> int:
    """An ephemeral port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The environment for child processes (unbuffered, quiet banners)."""
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "FASTMCP_SHOW_SERVER_BANNER": "false"})
    env.update(extra)
    return env


def kill_group(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Stop a child started with start_new_session=True, and everything in its group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers left in the group


def wait_http(
    url: str,
    timeout: float = 20.0,
    proc: subprocess.Popen[Any] | None = None,
    *,
    status: int | None = None,
    interval: float = 0.05,
) -> float:
    """Wait until ``url`` answers (with ``status`` if given); return the monotonic time it did."""
    deadline = time.monotonic() + timeout
    last: object = None
    with httpx2.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
            try:
                response = http.get(url)
                if status is None or response.status_code == status:
                    return time.monotonic()
                last = response.status_code
            except httpx2.HTTPError as exc:  # not listening yet
                last = exc
            time.sleep(interval)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


@contextlib.contextmanager
def spawn(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    ready_url: str | None = None,
    timeout: float = 20.0,
    stderr: Any = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[Any]]:
    """Start a process in its own group; wait for ``ready_url``; kill the group afterwards."""
    proc = subprocess.Popen(
        list(cmd),
        env=env or child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr if stderr is not None else subprocess.DEVNULL,
        start_new_session=True,
        cwd=cwd,
    )
    try:
        if ready_url:
            wait_http(ready_url, timeout, proc)
        yield proc
    finally:
        kill_group(proc)


def fastmcp_server(name: str, transport: str, port: int | None = None) -> list[str]:
    """Command line of a test server in tests/servers/ (``name`` without .py)."""
    cmd = [PYTHON, str(SERVERS / f"{name}.py"), "--transport", transport]
    if port is not None:
        cmd += ["--port", str(port)]
    return cmd


def write_config(
    path: Path, backends: list[dict[str, Any]], routing: dict[str, Any] | None = None
) -> Path:
    """Write a backends.yaml and return its path."""
    data: dict[str, Any] = {"backends": backends}
    if routing:
        data["routing"] = routing
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def router_cmd(config: Path, *args: str) -> list[str]:
    """Command line that runs the router from this checkout."""
    return [PYTHON, "-m", "mcp_router.cli", "--config", str(config), *args]


@contextlib.contextmanager
def router_http(
    config: Path,
    *,
    transport: str = "http",
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    stderr: Any = None,
) -> Iterator[str]:
    """Run the router over HTTP on a free port; yield its base URL once /ready says ready."""
    port = free_port()
    cmd = router_cmd(config, "--transport", transport, "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    with spawn(cmd, env=env, ready_url=f"{base}/health", timeout=timeout, stderr=stderr) as proc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"router exited with {proc.returncode}")
            if httpx2.get(f"{base}/ready", timeout=2).status_code == 200:
                break
            time.sleep(0.05)
        yield base


def router_stdio_client(
    config: Path, *, mode: str = "legacy", env: dict[str, str] | None = None
) -> Client:
    """An MCP client that launches the router over stdio, as Claude Code does."""
    params = StdioServerParameters(
        command=PYTHON,
        args=["-m", "mcp_router.cli", "--config", str(config)],
        env=env or child_env(),
    )
    return Client(params, mode=mode)


@contextlib.asynccontextmanager
async def http_client(url: str, *, mode: str = "legacy") -> AsyncIterator[Client]:
    """An MCP client over streamable HTTP (mode "legacy" = handshake era, else 2026-07-28)."""
    async with Client(url, mode=mode) as client:
        yield client
