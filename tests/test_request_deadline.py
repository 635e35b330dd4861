"""The request timeout bounds the whole call on every transport, cancellation included.

A real router process fronts a backend that is SIGSTOPped mid-test: it accepts connections
(the kernel does) but never answers or reads. Every call must fail within about the request
timeout, however many are made (the courtesy ``notifications/cancelled`` for the first one
must not hold the next ones), the error says so, and the circuit opens after
``failure_threshold`` timeouts as it would for a dead backend.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

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

TIMEOUT = 2.0
# Bound on a call beyond the timeout (the router's own margin is 0.5 s; the machine is busy).
SLACK = 2.5
BREAKER = {"failure_threshold": 2, "timeout_seconds": 30, "half_open_attempts": 1}


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """SIGSTOP a process (group) for the block, SIGCONT after."""
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)


@contextlib.contextmanager
def router(tmp: Path, backend: dict[str, Any]) -> Iterator[str]:
    config = write_config(
        tmp / "deadline.yaml",
        [{**backend, "health_check": {"enabled": False}, "circuit_breaker": BREAKER}],
        routing={"request_timeout_seconds": TIMEOUT, "retry": {"max_attempts": 1}},
    )
    port = free_port()
    cmd = router_cmd(config, "--transport", "http", "--port", str(port))
    with spawn(cmd, env=child_env(), stderr=(tmp / "router.log").open("w")) as proc:
        wait_http(f"http://127.0.0.1:{port}/ready", 45, proc, status=200)
        yield f"http://127.0.0.1:{port}/mcp"


async def timed_call(client: Client, tool: str, **arguments: Any) -> tuple[float, str]:
    start = time.monotonic()
    result = await client.session.call_tool(tool, arguments)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert result.is_error, text
    return time.monotonic() - start, text


async def circuit_state(client: Client, name: str) -> str:
    result = await client.session.call_tool("router_get_backend_health", {"backend_name": name})
    assert isinstance(result.structured_content, dict)
    return str(result.structured_content["circuit_state"])


async def assert_bounded_and_breaker_opens(url: str, tool: str, **arguments: Any) -> None:
    async with Client(url, mode="legacy") as client:
        for _ in range(2):
            seconds, text = await timed_call(client, tool, **arguments)
            assert seconds < TIMEOUT + SLACK, (seconds, text)
            assert f"no answer within {TIMEOUT:g}s" in text, text
        assert await circuit_state(client, "stuck") == "open"
        seconds, text = await timed_call(client, tool, **arguments)
        assert seconds < 1.0 and "circuit" in text.lower(), text


async def test_a_stopped_http_backend_fails_every_call_within_the_timeout_and_opens_its_circuit(
    tmp_path: Path,
) -> None:
    port = free_port()
    cmd = [PYTHON, str(SERVERS / "bulky.py"), "--transport", "http", "--port", str(port)]
    with spawn(cmd, ready_url=f"http://127.0.0.1:{port}/healthz") as server:
        backend = {"name": "stuck", "url": f"http://127.0.0.1:{port}/mcp"}
        with router(tmp_path, backend) as url:
            async with Client(url, mode="legacy") as client:  # the session works first
                result = await client.session.call_tool("stuck_echo", {"text": "hi"})
                assert not result.is_error
            with stopped(server.pid):
                await assert_bounded_and_breaker_opens(url, "stuck_echo", text="hi")


async def test_a_stopped_stdio_backend_with_a_full_stdin_fails_within_the_timeout(
    tmp_path: Path,
) -> None:
    backend = {"name": "stuck", "command": PYTHON, "args": [str(SERVERS / "raw_stdio.py")]}
    with router(tmp_path, backend) as url:
        async with Client(url, mode="legacy") as client:
            detail = await client.session.call_tool("stuck_spawn_grandchild", {})
            assert isinstance(detail.structured_content, dict)
            child = int(detail.structured_content["me"])
            os.kill(int(detail.structured_content["pid"]), signal.SIGKILL)
        # 256 KiB arguments: more than a pipe holds, so writing the request itself blocks.
        with stopped(os.getpgid(child)):
            await assert_bounded_and_breaker_opens(url, "stuck_echo", text="z" * 256 * 1024)
