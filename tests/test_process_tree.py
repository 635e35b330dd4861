"""A stdio backend's whole process tree goes when the router goes, even by SIGKILL.

The router runs as a real process (over HTTP) with a stdio backend that is a ``sh -c``
wrapper around a python server (so the server is a grandchild of the router), and the server
spawns a process of its own that ignores SIGTERM and has no stdin to see closing. The router
is then SIGKILLed: it runs no shutdown at all. The wrapper (parent-death signal), the server
and its child (the router's process-group guard) must all be gone within seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
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

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and prctl"),
]

RAW = str(SERVERS / "raw_stdio.py")


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


@contextlib.contextmanager
def router(tmp: Path, backend: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    config = write_config(tmp / "tree.yaml", [{**backend, "health_check": {"enabled": False}}])
    port = free_port()
    cmd = router_cmd(config, "--transport", "http", "--port", str(port))
    with spawn(cmd, env=child_env(), stderr=(tmp / "router.log").open("w")) as proc:
        wait_http(f"http://127.0.0.1:{port}/ready", 45, proc, status=200)
        yield f"http://127.0.0.1:{port}/mcp", proc


async def structured(url: str, tool: str) -> dict[str, Any]:
    async with Client(url, mode="legacy") as client:
        result = await client.session.call_tool(tool, {})
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


async def test_a_sigkilled_router_leaves_no_backend_process_behind(tmp_path: Path) -> None:
    # "; exit" keeps sh from exec-ing python: python is a grandchild, sh the group leader.
    backend = {"name": "tree", "command": "sh", "args": ["-c", f"'{PYTHON}' '{RAW}'; exit 0"]}
    pids: list[int] = []
    try:
        with router(tmp_path, backend) as (url, proc):
            tree = await structured(url, "tree_spawn_grandchild")
            server, stubborn = int(tree["me"]), int(tree["pid"])
            wrapper = os.getpgid(server)  # the group leader: sh
            pids = [wrapper, server, stubborn]
            assert all(alive(p) for p in pids) and wrapper != server
            os.kill(proc.pid, signal.SIGKILL)  # no shutdown runs
            proc.wait(timeout=10)
            assert wait_gone(pids) == [], pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_a_stdio_child_is_started_with_a_parent_death_signal(tmp_path: Path) -> None:
    backend = {"name": "tree", "command": PYTHON, "args": [RAW]}
    with router(tmp_path, backend) as (url, _proc):
        assert (await structured(url, "tree_pdeathsig"))["signal"] == signal.SIGKILL
