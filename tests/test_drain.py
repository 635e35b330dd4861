"""SIGTERM drains the router: readiness 503, no new sessions, in-flight calls finish (or are cut
after ``MCP_SHUTDOWN_GRACE_SECONDS``), on the HTTP front and on the stdio front.

Real router processes, a real slow tool (``faulty.py``'s ``slow``) behind them, real signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from support import (
    PYTHON,
    SERVERS,
    child_env,
    free_port,
    kill_group,
    router_cmd,
    wait_http,
    write_config,
)

CALLS = 8


def _config(tmp_path: Path) -> Path:
    backend = {
        "name": "slowpoke",
        "command": PYTHON,
        "args": [str(SERVERS / "faulty.py"), "--transport", "stdio", "--name", "slowpoke"],
        "namespace": "s",
    }
    return write_config(tmp_path / "backends.yaml", [backend], {"request_timeout_seconds": 60})


def _start_http(config: Path, grace: float) -> tuple[subprocess.Popen[Any], str]:
    port = free_port()
    log = (config.parent / "router.log").open("w")  # closed with the process; read on failure
    proc = subprocess.Popen(
        router_cmd(config, "--transport", "http", "--port", str(port)),
        env=child_env(MCP_SHUTDOWN_GRACE_SECONDS=str(grace), MCP_WATCH_CONFIG="false"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/ready", 30, proc, status=200)
    except BaseException:
        kill_group(proc)
        raise
    return proc, base


async def _slow_calls(base: str, seconds: float) -> list[Any]:
    """CALLS concurrent ``slow`` calls, each in its own session; outcomes in order."""
    outcomes: list[Any] = [None] * CALLS

    async def one(i: int) -> None:
        try:
            async with Client(f"{base}/mcp", mode="legacy") as client:
                result = await client.session.call_tool("s_slow", {"seconds": seconds, "x": i})
                outcomes[i] = result.structured_content
        except Exception as exc:  # what a cut call looks like to the client
            # the answer counts even if the session's GET stream is cut at exit afterwards
            if outcomes[i] is None:
                outcomes[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(CALLS):
            tg.start_soon(one, i)
    return outcomes


async def _until_in_flight(base: str, count: int, timeout: float = 30) -> None:
    """Wait until ``count`` calls run on the backend (the router's own in-flight gauge)."""
    line = 'mcp_router_backend_in_flight{backend="slowpoke"} ' + f"{count:.1f}"
    async with httpx2.AsyncClient(timeout=5) as http:
        with anyio.fail_after(timeout):
            while True:
                if line in (await http.get(f"{base}/metrics")).text:
                    return
                await anyio.sleep(0.1)


def _wait_exit(proc: subprocess.Popen[Any], timeout: float) -> float:
    t0 = time.monotonic()
    proc.wait(timeout=timeout)
    return time.monotonic() - t0


def test_sigterm_on_http_front_lets_eight_in_flight_calls_finish(tmp_path: Path) -> None:
    proc, base = _start_http(_config(tmp_path), grace=30)
    seen: dict[str, Any] = {}
    try:

        async def scenario() -> list[Any]:
            async with anyio.create_task_group() as tg:
                box: list[list[Any]] = []

                async def calls() -> None:
                    box.append(await _slow_calls(base, 4.0))

                tg.start_soon(calls)
                await _until_in_flight(base, CALLS)  # then SIGTERM mid-way through the calls
                await anyio.sleep(0.5)
                os.kill(proc.pid, signal.SIGTERM)
                await anyio.sleep(0.5)
                async with httpx2.AsyncClient(timeout=5) as http:
                    ready = await http.get(f"{base}/ready")
                    seen["ready"] = (ready.status_code, ready.json())
                    init = await http.post(
                        f"{base}/mcp",
                        json={
                            "jsonrpc": "2.0",
                            "id": 1,
                            "method": "initialize",
                            "params": {
                                "protocolVersion": "2025-11-25",
                                "capabilities": {},
                                "clientInfo": {"name": "late", "version": "1"},
                            },
                        },
                        headers={"accept": "application/json, text/event-stream"},
                    )
                    seen["initialize"] = (init.status_code, init.json())
            return box[0]

        outcomes = anyio.run(scenario)
        exited_in = _wait_exit(proc, 15)
    finally:
        kill_group(proc)
    assert seen["ready"][0] == 503
    assert seen["ready"][1]["draining"] is True
    assert seen["ready"][1]["reason"].startswith("draining")
    assert seen["initialize"][0] == 503
    assert "shutting down" in seen["initialize"][1]["error"]["message"]
    completed = [o for o in outcomes if isinstance(o, dict) and o.get("instance") == "slowpoke"]
    log = (tmp_path / "router.log").read_text()
    assert len(completed) == CALLS, (outcomes, log[-4000:])
    assert sorted(o["x"] for o in completed) == list(range(CALLS))
    assert proc.returncode == 0
    assert exited_in < 10


def test_sigterm_with_short_grace_cuts_calls_and_exits_within_the_bound(tmp_path: Path) -> None:
    grace = 1.0
    proc, base = _start_http(_config(tmp_path), grace=grace)
    try:

        async def scenario() -> tuple[list[Any], float]:
            box: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def calls() -> None:
                    box.append(await _slow_calls(base, 30.0))

                tg.start_soon(calls)
                await _until_in_flight(base, CALLS)
                sent = time.monotonic()
                os.kill(proc.pid, signal.SIGTERM)
                await anyio.to_thread.run_sync(proc.wait, 20)
                box.append(time.monotonic() - sent)
            return box[0], box[1]

        outcomes, exit_after = anyio.run(scenario)
    finally:
        kill_group(proc)
    assert all(not (isinstance(o, dict) and "instance" in o) for o in outcomes), outcomes
    # grace + uvicorn's 2 s for what is left + stopping the backend, on a loaded machine
    assert exit_after < grace + 8, exit_after


# ----------------------------------------------------------------------------- stdio front


def _rpc(proc: subprocess.Popen[Any], message: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()


def _start_stdio(config: Path, grace: float) -> subprocess.Popen[Any]:
    proc = subprocess.Popen(
        router_cmd(config),
        env=child_env(MCP_SHUTDOWN_GRACE_SECONDS=str(grace), MCP_WATCH_CONFIG="false"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _rpc(
        proc,
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "drain-test", "version": "1"},
            },
        },
    )
    _rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    return proc


class _Answers:
    """Reads the router's stdout in a thread: every JSON-RPC answer by id."""

    def __init__(self, proc: subprocess.Popen[Any]) -> None:
        self.by_id: dict[int, Any] = {}
        self.closed = threading.Event()
        self._proc = proc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip():
                message = json.loads(line)
                if "id" in message and ("result" in message or "error" in message):
                    self.by_id[message["id"]] = message
        self.closed.set()

    def wait_for(self, key: int, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while key not in self.by_id:
            assert time.monotonic() < deadline, f"no answer to {key} within {timeout}s"
            assert not self.closed.is_set(), f"stdout closed before the answer to {key}"
            time.sleep(0.05)
        return self.by_id[key]


@pytest.mark.parametrize(("grace", "seconds"), [(30.0, 4.0), (1.0, 30.0)], ids=["drain", "cut"])
def test_sigterm_on_stdio_front_drains_in_flight_calls(
    tmp_path: Path, grace: float, seconds: float
) -> None:
    proc = _start_stdio(_config(tmp_path), grace)
    try:
        answers = _Answers(proc)
        assert "result" in answers.wait_for(0, 30)
        # tools/list waits for discovery: once it answers, the backend is there
        _rpc(proc, {"jsonrpc": "2.0", "id": 100, "method": "tools/list"})
        names = [t["name"] for t in answers.wait_for(100, 60)["result"]["tools"]]
        assert "s_slow" in names
        for i in range(1, CALLS + 1):
            _rpc(
                proc,
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "tools/call",
                    "params": {"name": "s_slow", "arguments": {"seconds": seconds, "x": i}},
                },
            )
        time.sleep(1.5)  # the calls are running on the backend
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace + 20)
        exit_after = time.monotonic() - sent
        answers.closed.wait(5)
    finally:
        kill_group(proc)
    calls = {i: answers.by_id.get(i) for i in range(1, CALLS + 1)}
    if seconds < grace:
        assert all(a is not None and "result" in a for a in calls.values()), calls
        for i, answer in calls.items():
            assert answer["result"]["structuredContent"]["x"] == i
        assert proc.returncode == 0
        assert exit_after < seconds + 10, exit_after
    else:
        # cut: no call completed; those answered at all were told they failed
        for answer in calls.values():
            if answer is not None:
                assert "error" in answer or answer["result"].get("isError") is True, answer
        assert exit_after < grace + 12, exit_after
