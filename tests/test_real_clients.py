"""Clients nobody on this project wrote, connected the way docs/clients.md tells a user to.

- Claude Code (npm ``@anthropic-ai/claude-code``, pinned): the exact ``claude mcp add`` lines
  of docs/clients.md (stdio from the clone, stdio through ``uvx``, and HTTP against a running
  ``mcp-router --transport http``), only paths and the port substituted, run with ``HOME`` set
  to a temporary folder (no login: ``mcp add`` and ``mcp list`` work offline); then
  ``claude mcp list`` must report the router ``✔ Connected``.
- MCP Inspector CLI (npm ``@modelcontextprotocol/inspector``, pinned): ``tools/list`` and
  ``tools/call demo_echo`` over stdio and over HTTP.
- TypeScript SDK (npm ``@modelcontextprotocol/sdk``): ``tests/clients/ts_client.mjs`` over
  ``StdioClientTransport`` and ``StreamableHTTPClientTransport``.

The official servers behind the router, per client and front, are in test_official_servers.py.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from realclients import (
    CLAUDE,
    INSPECTOR,
    TS_SDK,
    Target,
    inspector_cli,
    missing,
    node_env,
    run,
    ts_sdk,
)
from support import (
    PYTHON,
    ROOT,
    fastmcp_server,
    free_port,
    run_router,
    spawn,
    wait_http,
    write_config,
)

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.xdist_group("real-clients"),
]

DOC = ROOT / "docs" / "clients.md"
REPO = "/path/to/mcp-router"
CONFIG = "/path/to/backends.yaml"
CONNECTED = re.compile(r"[✓✔] Connected")
# Claude Code waits 30 s for a server by default; a loaded machine building the uvx
# environment for the first time can take longer.
CLAUDE_MCP_TIMEOUT_MS = "120000"


def doc_lines(prefix: str) -> list[str]:
    """The lines of docs/clients.md's ``sh`` blocks that start with ``prefix``."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith(prefix)
    ]


def doc_line(prefix: str, containing: str = "") -> str:
    lines = [line for line in doc_lines(prefix) if containing in line]
    assert len(lines) == 1, (prefix, containing, lines)
    return lines[0]


@pytest.fixture(scope="module")
def basic_config(module_tmp: Path) -> Path:
    """A router config with one stdio backend (tests/servers/basic.py)."""
    stdio = fastmcp_server("basic", "stdio")
    return write_config(
        module_tmp / "backends.yaml",
        [
            {
                "name": "basic",
                "command": stdio[0],
                "args": [*stdio[1:], "--name", "claude"],
                "connect_timeout_seconds": 60,  # a loaded machine starts Python slowly
            }
        ],
    )


@pytest.fixture(scope="module")
def demo_config(module_tmp: Path) -> Path:
    """A router config with the bundled demo server (``demo_echo``, ...)."""
    return write_config(
        module_tmp / "demo.yaml",
        [
            {
                "name": "demo",
                "command": PYTHON,
                "args": ["-m", "mcp_router.template"],
                "connect_timeout_seconds": 60,
            }
        ],
    )


@pytest.fixture(scope="module")
def demo_router(demo_config: Path, module_tmp: Path) -> Iterator[str]:
    """The router's HTTP front before the demo server; yields its MCP URL."""
    log_path = module_tmp / "demo-router.log"
    with run_router(demo_config, log_path, timeout=60) as router:
        yield router.url


# ------------------------------------------------------------------------------ Claude Code


class ClaudeCode:
    """``claude`` with a private HOME and project folder (its config lives there)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = node_env(home, MCP_TIMEOUT=CLAUDE_MCP_TIMEOUT_MS)

    def __call__(self, argv: list[str], timeout: float = 150) -> tuple[int, str]:
        assert argv[0] == "claude"
        result = run([str(CLAUDE), *argv[1:]], env=self.env, cwd=self.home, timeout=timeout)
        return result.returncode, result.stdout + result.stderr

    def add_from_docs(self, line: str, substitutions: dict[str, str]) -> str:
        for old, new in substitutions.items():
            line = line.replace(old, new)
        code, out = self(shlex.split(line))
        assert code == 0, f"`{line}` failed ({code}):\n{out}"
        return out

    def status(self, name: str) -> str:
        _, out = self(["claude", "mcp", "list"])
        lines = [x for x in out.splitlines() if x.startswith(f"{name}:")]
        assert len(lines) == 1, out
        return lines[0]


@pytest.fixture
def claude(tmp_path: Path) -> ClaudeCode:
    reason = missing(CLAUDE)
    if reason:
        pytest.skip(reason)
    return ClaudeCode(tmp_path)


def test_claude_code_connects_to_the_router_added_with_the_docs_uv_run_line(
    claude: ClaudeCode, basic_config: Path
) -> None:
    line = doc_line("claude mcp add --transport stdio", " uv run ")
    out = claude.add_from_docs(line, {REPO: str(ROOT), CONFIG: str(basic_config)})
    assert "Added stdio MCP server mcp-router" in out
    assert CONNECTED.search(claude.status("mcp-router"))


def test_claude_code_connects_to_the_router_added_with_the_docs_uvx_line(
    claude: ClaudeCode, basic_config: Path
) -> None:
    line = doc_line("claude mcp add --transport stdio", " uvx ")
    claude.add_from_docs(line, {REPO: str(ROOT), CONFIG: str(basic_config)})
    assert CONNECTED.search(claude.status("mcp-router"))


def test_claude_code_connects_to_the_running_http_router_added_with_the_docs_line(
    claude: ClaudeCode, basic_config: Path, module_tmp: Path
) -> None:
    serve = doc_line("uv run --directory /path/to/mcp-router mcp-router --config", "--port 8000")
    port = free_port()
    argv = shlex.split(
        serve.replace(REPO, str(ROOT))
        .replace(CONFIG, str(basic_config))
        .replace("--port 8000", f"--port {port}")
    )
    base = f"http://127.0.0.1:{port}"
    log_path = module_tmp / "claude-http-router.log"
    with (
        log_path.open("wb") as log,
        spawn(argv, ready_url=f"{base}/health", stderr=log, timeout=60),
    ):
        wait_http(f"{base}/ready", timeout=60, status=200)
        line = doc_line("claude mcp add --transport http")
        out = claude.add_from_docs(line, {"127.0.0.1:8000": f"127.0.0.1:{port}"})
        assert f"{base}/mcp" in out
        assert CONNECTED.search(claude.status("mcp-router"))


def test_claude_code_rejects_the_server_name_after_env(claude: ClaudeCode) -> None:
    """Why the docs put the name first: ``--env`` takes several values and swallows it."""
    code, out = claude(
        shlex.split(
            "claude mcp add --transport stdio --env MCP_BACKENDS_CONFIG=/x.yaml mcp-router "
            "-- uv run mcp-router"
        ),
        timeout=60,
    )
    assert code != 0
    assert "Invalid environment variable format: mcp-router" in out


def test_claude_code_reports_a_router_that_cannot_start_as_failed(
    claude: ClaudeCode, module_tmp: Path
) -> None:
    """``✔ Connected`` above is a real check: a broken config is not reported connected."""
    broken = module_tmp / "broken.yaml"
    broken.write_text("backends: [{name: 'bad name!', command: x}]\n")
    line = doc_line("claude mcp add --transport stdio", " uv run ")
    claude.add_from_docs(line, {REPO: str(ROOT), CONFIG: str(broken)})
    status = claude.status("mcp-router")
    assert not CONNECTED.search(status), status


# ------------------------------------------------------------------------------ Inspector / TS


def _router_stdio(config: Path) -> Target:
    return Target(
        command=[PYTHON, "-m", "mcp_router.cli"], env={"MCP_BACKENDS_CONFIG": str(config)}
    )


@pytest.fixture(params=["stdio-front", "http-front"])
def front(request: pytest.FixtureRequest, demo_config: Path) -> Target:
    if request.param == "stdio-front":
        return _router_stdio(demo_config)
    return Target(url=request.getfixturevalue("demo_router"))


def test_inspector_cli_lists_and_calls_demo_echo(front: Target, tmp_path: Path) -> None:
    reason = missing(INSPECTOR)
    if reason:
        pytest.skip(reason)
    seen = inspector_cli(
        front, [("demo_echo", {"text": "héllo from the Inspector"})], home=tmp_path
    )
    names = {t["name"] for t in seen["tools"]}
    assert {"router_list_backends", "demo_echo", "demo_add"} <= names
    [echo] = seen["calls"]
    assert echo["content"] == [{"type": "text", "text": "héllo from the Inspector"}]
    assert not echo.get("isError")


def test_typescript_sdk_client_lists_and_calls_through_the_router(front: Target) -> None:
    reason = missing(TS_SDK)
    if reason:
        pytest.skip(reason)
    seen = ts_sdk(
        front, [("demo_echo", {"text": "héllo from TypeScript"}), ("demo_add", {"a": 2, "b": 3})]
    )
    assert seen["serverInfo"]["name"] == "mcp-router"
    assert "tools" in seen["capabilities"]
    names = {t["name"] for t in seen["tools"]}
    assert {"router_list_backends", "demo_echo", "demo_add"} <= names
    echo, total = seen["calls"]
    assert echo["content"] == [{"type": "text", "text": "héllo from TypeScript"}]
    assert total["structuredContent"] == {"result": 5.0}
