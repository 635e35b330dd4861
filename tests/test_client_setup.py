"""docs/clients.md works as pasted: every snippet's server command answers MCP.

The snippets are read from the document itself (not copied here), the placeholders
``/path/to/mcp-router`` and ``/path/to/backends.yaml`` are filled in with this checkout and a
test config (one stdio backend, tests/servers/basic.py), and the command each snippet gives is
launched the way its client would: as a stdio MCP server (Claude Desktop's JSON entry, the argv
after ``--`` of ``claude mcp add``, ``fastmcp run``, the entry ``fastmcp install mcp-json``
prints) or over HTTP (the ``--transport http`` form), then must answer ``initialize`` and
``tools/list`` with the backend's tools.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcp_router.config import load_config
from support import (
    MANAGEMENT_TOOLS,
    ROOT,
    child_env,
    fastmcp_server,
    free_port,
    http_client,
    router_stdio,
    run_router,
    write_config,
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH"),
]

DOC = ROOT / "docs" / "clients.md"
REPO = "/path/to/mcp-router"
CONFIG = "/path/to/backends.yaml"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def _sh_lines(prefix: str) -> list[str]:
    return [
        line.strip()
        for block in _blocks("sh")
        for line in block.splitlines()
        if line.strip().startswith(prefix)
    ]


def _one(prefix: str) -> str:
    lines = _sh_lines(prefix)
    assert len(lines) == 1, (prefix, lines)
    return lines[0]


@pytest.fixture(scope="module")
def config(module_tmp: Path) -> Path:
    stdio = fastmcp_server("basic", "stdio")
    return write_config(
        module_tmp / "backends.yaml",
        [
            {
                "name": "basic",
                "command": stdio[0],
                "args": [*stdio[1:], "--name", "from-docs"],
                "connect_timeout_seconds": 60,  # a loaded machine starts Python slowly
            }
        ],
    )


def _fill(text: str, config: Path) -> str:
    return text.replace(REPO, str(ROOT)).replace(CONFIG, str(config))


async def _check_stdio(
    command: str, args: list[str], env: dict[str, str], cwd: Path, timeout: float = 90
) -> None:
    async with router_stdio(
        None, command=[command, *args], env=child_env(**env), cwd=cwd, timeout=timeout
    ) as client:
        assert client.server_info is not None
        assert client.server_info.name == "mcp-router"
        names = {t.name for t in (await client.list_tools()).tools}
        assert MANAGEMENT_TOOLS | {"basic_whoami"} <= names, names
        result = await client.call_tool("basic_whoami", {})
        assert result.content[0].text == "from-docs"  # type: ignore[union-attr]


def _claude_add_argv(line: str, config: Path) -> tuple[list[str], dict[str, str]]:
    """The server argv (after ``--``) and the ``--env`` values of a ``claude mcp add`` line."""
    words = shlex.split(_fill(line, config))
    split = words.index("--")
    options, argv = words[:split], words[split + 1 :]
    env: dict[str, str] = {}
    for i, word in enumerate(options):
        if word in ("--env", "-e"):
            key, _, value = options[i + 1].partition("=")
            env[key] = value
    assert options[:3] == ["claude", "mcp", "add"]
    assert "--transport" in options and options[options.index("--transport") + 1] == "stdio"
    return argv, env


async def test_claude_desktop_entry(config: Path, tmp_path: Path) -> None:
    entries = [b for b in _blocks("json") if '"mcpServers"' in b]
    assert len(entries) == 1
    doc = json.loads(_fill(entries[0], config))
    entry = doc["mcpServers"]["mcp-router"]
    assert entry["env"]["MCP_BACKENDS_CONFIG"] == str(config)
    await _check_stdio(entry["command"], entry["args"], entry["env"], tmp_path)


async def test_claude_code_local_clone(config: Path, tmp_path: Path) -> None:
    lines = [x for x in _sh_lines("claude mcp add --transport stdio") if " uv run " in x]
    assert len(lines) == 1, lines
    argv, env = _claude_add_argv(lines[0], config)
    assert argv[:2] == ["uv", "run"]
    await _check_stdio(argv[0], argv[1:], env, tmp_path)


async def test_claude_code_uvx(config: Path, tmp_path: Path) -> None:
    lines = [x for x in _sh_lines("claude mcp add --transport stdio") if " uvx " in x]
    assert len(lines) == 1, lines
    argv, env = _claude_add_argv(lines[0], config)
    assert argv[:3] == ["uvx", "--from", str(ROOT)]
    await _check_stdio(argv[0], argv[1:], env, tmp_path)


async def test_claude_code_http(config: Path) -> None:
    serve = _one("uv run --directory /path/to/mcp-router mcp-router --config")
    add = _one("claude mcp add --transport http")
    port = free_port()
    serve_argv = shlex.split(_fill(serve, config).replace("--port 8000", f"--port {port}"))
    url = shlex.split(add)[-1].replace(":8000/", f":{port}/")
    assert url == f"http://127.0.0.1:{port}/mcp"
    with run_router(None, argv=serve_argv, port=port, timeout=60):
        async with http_client(url) as client:
            names = {t.name for t in (await client.list_tools()).tools}
    assert "basic_whoami" in names, names


async def test_fastmcp_run(config: Path) -> None:
    assert "cd /path/to/mcp-router" in _sh_lines("cd ")
    line = _one("MCP_BACKENDS_CONFIG=/path/to/backends.yaml uv run fastmcp run")
    words = shlex.split(_fill(line, config))
    key, _, value = words[0].partition("=")
    await _check_stdio(words[1], words[2:], {key: value}, ROOT)


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=90, cwd=cwd, env=child_env()
    )


async def test_fastmcp_install_mcp_json(config: Path, tmp_path: Path) -> None:
    install = [line for line in _sh_lines("uv run fastmcp install ") if " mcp-json " in line]
    assert len(install) == 1
    for line in _sh_lines("uv run fastmcp install "):
        assert "src/mcp_router/app.py:server" in line and "--project /path/to/mcp-router" in line
    result = _run(shlex.split(_fill(install[0], config)), ROOT)
    assert result.returncode == 0, result.stderr
    entry: dict[str, Any] = json.loads(result.stdout)["mcp-router"]
    assert entry["env"] == {"MCP_BACKENDS_CONFIG": str(config)}
    await _check_stdio(entry["command"], entry["args"], entry["env"], tmp_path)


def test_import_command(config: Path, tmp_path: Path) -> None:
    line = _one("uv run --directory /path/to/mcp-router mcp-router import")
    source = tmp_path / "mcp.json"
    stdio = fastmcp_server("basic", "stdio")
    source.write_text(
        json.dumps({"mcpServers": {"basic": {"command": stdio[0], "args": stdio[1:]}}})
    )
    out = tmp_path / "imported.yaml"
    argv = shlex.split(line.replace(REPO, str(ROOT)).replace(CONFIG, str(out)))
    argv = [str(source) if a == "~/.cursor/mcp.json" else a for a in argv]
    result = _run(argv, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "name: basic" in out.read_text()


def test_yaml_snippets_are_valid_configs(tmp_path: Path) -> None:
    blocks = _blocks("yaml")
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        path = tmp_path / f"snippet{i}.yaml"
        path.write_text(block)
        load_config(path)
