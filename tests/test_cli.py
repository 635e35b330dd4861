"""The `mcp-router` command line as users meet it: errors, `check`, stdio and HTTP launches.

Every test runs the installed entry point (.venv/bin/mcp-router) as a real process, from a
temporary working directory without config/backends.yaml, with no MCP_* variables inherited.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client

from support import PYTHON, free_port, router_stdio, run_router, write_config

# A guard for overloaded machines only: each test takes a few seconds.
pytestmark = pytest.mark.timeout(60)  # a guard for overloaded machines: each test takes seconds

MCP_ROUTER = Path(PYTHON).parent / "mcp-router"
DEMO_BACKEND: dict[str, Any] = {
    "name": "demo",
    "command": PYTHON,
    "args": ["-m", "mcp_router.template"],
    "connect_timeout_seconds": 15,
}


def clean_env(**extra: str) -> dict[str, str]:
    """The user's environment without MCP_* settings (they would change what is tested)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MCP_")}
    env.update({"PYTHONUNBUFFERED": "1", "FASTMCP_SHOW_SERVER_BANNER": "false"})
    env.update(extra)
    return env


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: bytes = b"",
    timeout: float = 45,
) -> subprocess.CompletedProcess[str]:
    """Run ``mcp-router ARGS`` to completion (checks, config errors, stdin closed at once)."""
    proc = subprocess.run(
        [str(MCP_ROUTER), *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or clean_env(),
        timeout=timeout,
        start_new_session=True,
    )
    return proc


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """A working directory with no config/backends.yaml (a new user's shell)."""
    work = tmp_path / "work"
    work.mkdir()
    return work


# --------------------------------------------------------------------------- bad configuration


def assert_config_error(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 2, the headline, each expected fragment, no traceback, nothing on stdout."""
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("mcp-router: invalid configuration\n"), proc.stderr
    for fragment in expected:
        assert fragment in proc.stderr, f"{fragment!r} not in:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_missing_config_file_exits_2_naming_the_file(cwd: Path) -> None:
    proc = run_cli("--config", "/nonexistent.yaml", cwd=cwd)
    assert_config_error(proc, "/nonexistent.yaml: file not found")


def test_yaml_syntax_error_exits_2_naming_file_and_line(cwd: Path) -> None:
    path = cwd / "syntax.yaml"
    path.write_text("backends:\n  - name: a\n    command: echo\n   args: [1\n")
    proc = run_cli("--config", str(path), cwd=cwd)
    assert_config_error(proc, f"{path}: line 4", "YAML syntax error")


def test_unknown_key_exits_2_naming_its_key_path(cwd: Path) -> None:
    path = write_config(cwd / "unknown.yaml", [{"name": "a", "command": "echo", "colour": "red"}])
    proc = run_cli("--config", str(path), cwd=cwd)
    assert_config_error(proc, f"{path}: backends[0].colour: unknown key 'colour'")


def test_wrong_type_exits_2_naming_key_path_and_value(cwd: Path) -> None:
    path = write_config(cwd / "type.yaml", [{"name": "a", "command": "echo", "priority": "high"}])
    proc = run_cli("--config", str(path), cwd=cwd)
    assert_config_error(proc, f"{path}: backends[0].priority: ", "integer", "'high'")


def test_undefined_variable_exits_2_naming_variable_and_key_path(cwd: Path) -> None:
    backend = {
        "name": "db",
        "url": "http://127.0.0.1:9/mcp",
        "headers": {"Authorization": "Bearer ${ROUTER_TEST_UNSET_TOKEN}"},
    }
    path = write_config(cwd / "var.yaml", [backend])
    proc = run_cli("--config", str(path), cwd=cwd)
    assert_config_error(
        proc, f"{path}: backends[0].headers.Authorization: ", "ROUTER_TEST_UNSET_TOKEN", "not set"
    )


def test_duplicate_backend_names_exit_2_naming_the_second_one(cwd: Path) -> None:
    path = write_config(
        cwd / "dup.yaml",
        [{"name": "a", "command": "echo"}, {"name": "a", "command": "cat"}],
    )
    proc = run_cli("--config", str(path), cwd=cwd)
    assert_config_error(proc, f"{path}: backends[1].name: duplicate backend name 'a'")


def test_bad_environment_value_exits_2_naming_the_variable(cwd: Path) -> None:
    path = write_config(cwd / "good.yaml", [DEMO_BACKEND])
    proc = run_cli("--config", str(path), cwd=cwd, env=clean_env(MCP_PORT="abc"))
    assert_config_error(proc, "environment: MCP_PORT: ", "integer", "'abc'")


def test_check_with_bad_config_exits_2_too(cwd: Path) -> None:
    path = write_config(cwd / "unknown.yaml", [{"name": "a", "command": "echo", "colour": "red"}])
    proc = run_cli("check", "--config", str(path), cwd=cwd)
    assert_config_error(proc, f"{path}: backends[0].colour: ")


# --------------------------------------------------------------------------- mcp-router check

_SERVED_BY = re.compile(r"^\s+(\S+)\s+-> (.+) \((.+)\)$")


def catalog_lines(stdout: str) -> dict[str, tuple[str, str]]:
    """``exposed -> (backends serving it, original name)`` from the check output."""
    found: dict[str, tuple[str, str]] = {}
    for line in stdout.splitlines():
        m = _SERVED_BY.match(line)
        if m:
            found[m.group(1)] = (m.group(2), m.group(3))
    return found


def test_check_prints_each_exposed_name_with_its_backend_and_exits_0(cwd: Path) -> None:
    path = write_config(cwd / "good.yaml", [DEMO_BACKEND])
    proc = run_cli("check", "--config", str(path), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    tools = catalog_lines(proc.stdout)
    assert tools == {
        f"demo_{name}": ("demo", name)
        for name in ("echo", "add", "word_count", "current_time", "slow_echo", "fail")
    }
    assert re.search(r"^\s+demo\s+stdio\s.*\bok$", proc.stdout, re.M), proc.stdout
    assert "demo_code_review" in proc.stdout  # prompts
    assert "demo://demo/greeting/{name}" in proc.stdout  # resource templates


def test_check_with_an_unreachable_backend_fails_and_names_it(cwd: Path) -> None:
    ghost = {
        "name": "ghost",
        "url": f"http://127.0.0.1:{free_port()}/mcp",
        "connect_timeout_seconds": 2,
    }
    # `check` waits the longest connect timeout for a backend that is down: keep it short.
    demo = {**DEMO_BACKEND, "connect_timeout_seconds": 8}
    path = write_config(cwd / "ghost.yaml", [demo, ghost])
    proc = run_cli("check", "--config", str(path), cwd=cwd)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "not reachable: ghost" in proc.stderr
    assert re.search(r"^\s+ghost\s+http\s.*DOWN", proc.stdout, re.M), proc.stdout
    # The reachable backend is still reported with its catalog.
    assert catalog_lines(proc.stdout)["demo_echo"] == ("demo", "echo")


# --------------------------------------------------------------------------- launches


async def test_no_argument_stdio_launch_answers_initialize_and_lists_demo_echo(cwd: Path) -> None:
    # What `claude mcp add router -- mcp-router` starts: no arguments, no config file.
    command = [str(MCP_ROUTER)]
    async with router_stdio(None, command=command, env=clean_env(), cwd=cwd) as client:
        assert client.server_info.name == "mcp-router"
        names = [t.name for t in (await client.list_tools()).tools]
        assert "demo_echo" in names
        result = await client.call_tool("demo_echo", {"text": "from claude"})
        assert not result.is_error
        assert isinstance(result.content[0], types.TextContent)
        assert result.content[0].text == "from claude"


@pytest.fixture(scope="module")
def http_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mcp-router --transport http --port N` with no config, from an empty directory; yields
    the base URL once /ready says ready (it says 503 until discovery is done)."""
    work = tmp_path_factory.mktemp("http-work")
    port = free_port()
    argv = [str(MCP_ROUTER), "--transport", "http", "--port", str(port)]
    with run_router(None, argv=argv, port=port, env=clean_env(), cwd=work, timeout=40) as router:
        yield router.base


def test_new_user_http_router_is_healthy_and_ready(http_router: str) -> None:
    health = httpx2.get(f"{http_router}/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    ready = httpx2.get(f"{http_router}/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_new_user_http_router_serves_the_demo_echo_tool(http_router: str, mode: str) -> None:
    async with Client(f"{http_router}/mcp", mode=mode) as client:
        result = await client.call_tool("demo_echo", {"text": f"hello {mode}"})
    assert not result.is_error
    assert isinstance(result.content[0], types.TextContent)
    assert result.content[0].text == f"hello {mode}"


def _echo_calls(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mcp_router_requests_total{") and 'name="demo_echo"' in line
    )


async def test_new_user_http_router_counts_each_call_in_metrics(http_router: str) -> None:
    before = httpx2.get(f"{http_router}/metrics", timeout=5)
    async with Client(f"{http_router}/mcp", mode="legacy") as client:
        for text in ("one", "two"):
            assert not (await client.call_tool("demo_echo", {"text": text})).is_error
    after = httpx2.get(f"{http_router}/metrics", timeout=5)
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    assert "# TYPE mcp_router_requests_total counter" in after.text
    assert _echo_calls(after.text) - _echo_calls(before.text) == 2.0


def test_stdio_router_with_no_input_writes_nothing_to_stdout(cwd: Path) -> None:
    proc = run_cli(cwd=cwd, stdin=b"")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    # It did start (and said so on stderr) before it saw the end of its input.
    assert "front transport stdio" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_stdio_router_stdout_carries_only_json_rpc_even_with_debug_logs(
    cwd: Path, tmp_path: Path
) -> None:
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "demo_echo", "arguments": {"text": "x"}},
        },
    ]
    errlog = tmp_path / "stderr.log"  # a file: DEBUG logs could fill a pipe and stall the router
    with errlog.open("wb") as err:
        proc = subprocess.Popen(
            [str(MCP_ROUTER), "--log-level", "DEBUG"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=cwd,
            env=clean_env(),
            start_new_session=True,
        )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        lines: list[bytes] = []
        for request in requests:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
            if "id" in request:  # wait for its answer before the next request
                while True:
                    line = proc.stdout.readline()
                    assert line, "stdout closed early"
                    lines.append(line)
                    if json.loads(line).get("id") == request["id"]:
                        break
        proc.stdin.close()  # the client goes away: the router must exit cleanly
        lines += proc.stdout.readlines()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    stderr = errlog.read_bytes()

    assert proc.returncode == 0
    for line in lines:
        message = json.loads(line)  # every stdout line is one JSON-RPC message
        assert message["jsonrpc"] == "2.0"
    answers = {m["id"]: m for m in map(json.loads, lines) if "id" in m}
    assert answers[3]["result"]["content"][0]["text"] == "x"
    # The logs were written, to stderr.
    assert b"DEBUG" in stderr and b"front transport stdio" in stderr
    assert b"Traceback" not in stderr
