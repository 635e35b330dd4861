"""``mcp-router import``: Claude Desktop / Claude Code / Cursor ``mcpServers`` JSON -> YAML.

The YAML written must load to the same backends as the JSON itself (which the router also
accepts directly as ``--config``: tested end to end at the bottom, with a real router in front
of a stdio and an HTTP backend).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcp_router.config import ConfigError, load_config
from mcp_router.config.models import RouterConfig
from mcp_router.importer import convert_mcp_servers, import_file, looks_secret
from mcp_router.secrets import secret_name
from support import PYTHON, ROOT, child_env, fastmcp_server, http_client, run_router

pytestmark = pytest.mark.timeout(60)

CLAUDE_DESKTOP: dict[str, Any] = {
    "mcpServers": {
        "filesystem": {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"],
        },
        "github": {
            "command": "docker",
            "args": ["run", "-i", "--rm", "-e", "GITHUB_PERSONAL_ACCESS_TOKEN", "ghcr.io/x"],
            "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_0123456789abcdef", "LOG_LEVEL": "info"},
        },
    },
    "globalShortcut": "Ctrl+Space",
}

CLAUDE_CODE: dict[str, Any] = {  # .mcp.json: type + url/headers, ${VAR} references
    "mcpServers": {
        "api": {
            "type": "http",
            "url": "https://api.example.com/mcp",
            "headers": {"Authorization": "Bearer ${API_KEY}", "X-Team": "core"},
        },
        "events": {"type": "sse", "url": "https://events.example.com/stream"},
        "local": {"type": "stdio", "command": "uvx", "args": ["mcp-server-time"], "env": {}},
    }
}

CURSOR: dict[str, Any] = {  # ~/.cursor/mcp.json
    "mcpServers": {
        "linear": {"url": "https://mcp.linear.app/sse"},
        "remote": {"url": "https://x.example.com/mcp", "headers": {"X-Api-Key": "k-123456"}},
        "my tool": {"command": "node", "args": ["/opt/tool.js"], "disabled": True},
        "sqlite": {"command": "uvx", "args": ["mcp-server-sqlite", "--db", "a.db"]},
    }
}


def _backends(config: RouterConfig) -> list[dict[str, Any]]:
    return [b.model_dump() for b in config.backends]


def _write(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=2))
    return path


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("claude_desktop_config.json", CLAUDE_DESKTOP),
        (".mcp.json", CLAUDE_CODE),
        (
            "mcp.json",
            {"mcpServers": {k: v for k, v in CURSOR["mcpServers"].items() if " " not in k}},
        ),
    ],
)
def test_yaml_loads_to_the_same_backends_as_the_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filename: str, data: dict[str, Any]
) -> None:
    monkeypatch.setenv("API_KEY", "secret-from-env")
    source = _write(tmp_path, filename, data)
    result = import_file(source)
    out = tmp_path / "backends.yaml"
    out.write_text(result.yaml_text)
    assert _backends(load_config(out)) == _backends(load_config(source))
    assert _backends(result.config) == _backends(load_config(out))


def test_transports_and_flags_are_explicit(tmp_path: Path) -> None:
    result = convert_mcp_servers(CLAUDE_CODE)
    by_name = {b.name: b for b in result.config.backends}
    assert by_name["api"].transport == "http"
    assert by_name["events"].transport == "sse"  # from `type`, although the path is not /sse
    assert by_name["local"].transport == "stdio"
    assert "transport: sse" in result.yaml_text
    cursor = convert_mcp_servers(CURSOR)
    names = [b.name for b in cursor.config.backends]
    assert names == ["linear", "remote", "my-tool", "sqlite"]
    assert cursor.config.backends[0].transport == "sse"
    assert cursor.config.backends[2].enabled is False
    assert any("'my tool' is imported as backend 'my-tool'" in w for w in cursor.warnings)


def test_env_references_are_kept_and_dollars_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "k")
    data = {"mcpServers": {"s": {"command": "run", "args": ["--price", "5$", "${HOME:-/}"]}}}
    result = convert_mcp_servers(data)
    assert "5$$" in result.yaml_text
    assert result.config.backends[0].args == ["--price", "5$", result.config.backends[0].args[2]]
    assert "${HOME:-/}" in result.yaml_text
    code = convert_mcp_servers(CLAUDE_CODE)
    assert "Bearer ${API_KEY}" in code.yaml_text
    assert not any("API_KEY" in w for w in code.warnings)  # a reference is not a secret


def test_secrets_are_copied_literally_with_a_warning() -> None:
    result = convert_mcp_servers(CLAUDE_DESKTOP)
    assert "ghp_0123456789abcdef" in result.yaml_text
    secret_warnings = [w for w in result.warnings if "looks like a secret" in w]
    assert secret_warnings == [
        "github.env.GITHUB_PERSONAL_ACCESS_TOKEN: looks like a secret and is copied literally "
        "(use --env-refs to write a ${VAR} reference instead)"
    ]
    assert not any("LOG_LEVEL" in w for w in result.warnings)


def test_env_refs_replace_secrets_with_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {
        "mcpServers": {
            **CLAUDE_DESKTOP["mcpServers"],
            "remote api": {
                "url": "https://x.example.com/mcp",
                "headers": {"Authorization": "Bearer sk-live-999", "X-Api-Key": "k-777777"},
            },
        }
    }
    result = convert_mcp_servers(data, env_refs=True)
    for secret in ("ghp_0123456789abcdef", "sk-live-999", "k-777777"):
        assert secret not in result.yaml_text
    assert "GITHUB_PERSONAL_ACCESS_TOKEN: ${GITHUB_PERSONAL_ACCESS_TOKEN}" in result.yaml_text
    assert "Authorization: Bearer ${REMOTE_API_AUTHORIZATION}" in result.yaml_text
    assert result.variables == [
        "GITHUB_PERSONAL_ACCESS_TOKEN",
        "REMOTE_API_AUTHORIZATION",
        "REMOTE_API_X_API_KEY",
    ]
    # with those variables set, the YAML loads to what the literal import gives
    monkeypatch.setenv("GITHUB_PERSONAL_ACCESS_TOKEN", "ghp_0123456789abcdef")
    monkeypatch.setenv("REMOTE_API_AUTHORIZATION", "sk-live-999")
    monkeypatch.setenv("REMOTE_API_X_API_KEY", "k-777777")
    refs, literal = tmp_path / "refs.yaml", tmp_path / "literal.yaml"
    refs.write_text(result.yaml_text)
    literal.write_text(convert_mcp_servers(data).yaml_text)
    assert _backends(load_config(refs)) == _backends(load_config(literal))


def test_looks_secret() -> None:
    assert looks_secret("OPENAI_API_KEY", "sk-1")
    assert looks_secret("Authorization", "Basic abc")
    assert looks_secret("X-Custom", "Bearer abc")
    assert looks_secret("DB_PASSWORD", "hunter2")
    assert not looks_secret("LOG_LEVEL", "info")
    assert not looks_secret("KEYBOARD_LAYOUT", "us")
    assert not looks_secret("API_TOKEN", "${API_TOKEN}")
    assert looks_secret("X-Tenant", "acme", header=True)  # every header, as the router hides
    assert not looks_secret("Accept", "application/json", header=True)


@pytest.mark.parametrize(
    "name", ["GH_PAT", "DB_PASSWORD", "apiKey", "SESSION", "LOG_LEVEL", "KEYBOARD_LAYOUT", "PATH"]
)
def test_import_moves_out_exactly_what_the_router_hides(name: str) -> None:
    # One predicate: an env value becomes ${VAR} iff the router would redact it by its name.
    result = convert_mcp_servers(
        {"mcpServers": {"s": {"command": "run", "env": {name: "value-12345"}}}}, env_refs=True
    )
    assert ("value-12345" not in result.yaml_text) is secret_name(name)


def test_invalid_documents_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no 'mcpServers' mapping"):
        convert_mcp_servers({"servers_typo": {}})
    with pytest.raises(ConfigError, match="unknown server type"):
        convert_mcp_servers({"mcpServers": {"x": {"type": "websocket", "url": "https://a"}}})
    with pytest.raises(ConfigError, match="exactly one of 'command'"):
        convert_mcp_servers({"mcpServers": {"x": {"env": {}}}})
    bad = tmp_path / "bad.json"
    bad.write_text("{ nope")
    with pytest.raises(ConfigError, match="JSON syntax error"):
        import_file(bad)


def test_vscode_servers_key_is_accepted() -> None:
    result = convert_mcp_servers({"servers": {"t": {"type": "stdio", "command": "x"}}})
    assert [b.name for b in result.config.backends] == ["t"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "mcp_router.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=child_env(),
        cwd=ROOT,
    )


def test_cli_writes_stdout_or_file(tmp_path: Path) -> None:
    source = _write(tmp_path, "claude_desktop_config.json", CLAUDE_DESKTOP)
    shown = _cli("import", str(source))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("# Imported from")
    assert "warning: github.env.GITHUB_PERSONAL_ACCESS_TOKEN" in shown.stderr
    assert "imported 2 backend(s)" in shown.stderr
    out = tmp_path / "out.yaml"
    written = _cli("import", str(source), "-o", str(out), "--env-refs")
    assert written.returncode == 0, written.stderr
    assert written.stdout == ""
    assert "${GITHUB_PERSONAL_ACCESS_TOKEN}" in out.read_text()


def test_cli_bad_input_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"mcpServers": {"x": {"type": "ws", "url": "https://a"}}}')
    result = _cli("import", str(bad))
    assert result.returncode == 2
    assert "mcpServers.x.type" in result.stderr
    assert "Traceback" not in result.stderr
    assert _cli("import", str(tmp_path / "missing.json")).returncode == 2


async def test_router_runs_an_mcp_servers_file_directly(tmp_path: Path, start_server: Any) -> None:
    """A Claude Desktop style file as --config: one stdio and one HTTP (type: http) backend."""
    url = start_server("basic", "http", name="remote")
    stdio = fastmcp_server("basic", "stdio")
    config = _write(
        tmp_path,
        "claude_desktop_config.json",
        {
            "mcpServers": {
                "local": {"command": stdio[0], "args": [*stdio[1:], "--name", "local"]},
                "remote": {"type": "http", "url": url, "headers": {"X-Test": "1"}},
            }
        },
    )
    with run_router(config) as router:
        async with http_client(router.url) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"local_whoami", "remote_whoami"} <= names
            for backend in ("local", "remote"):
                result = await client.call_tool(f"{backend}_whoami", {})
                assert result.content[0].text == backend  # type: ignore[union-attr]
