"""A Claude Desktop ``mcpServers`` key that is not a valid backend name (``"my server"``) gets
the same backend name whether the file is passed as ``--config`` or through ``mcp-router
import``: one rule, ``mcp_router.config.loader.mcp_server_backend_names``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mcp_router.config import load_config
from mcp_router.config.loader import mcp_server_backend_names
from mcp_router.importer import import_file
from support import PYTHON, child_env, fastmcp_server

pytestmark = [pytest.mark.timeout(120)]

KEYS = ["my server", "github/issues", "ok-name", "my:server", " spaced ", "-", "ok-name ", "server"]


def test_invalid_keys_become_valid_distinct_backend_names() -> None:
    names = mcp_server_backend_names(KEYS)
    assert names == {
        "my server": "my-server",
        "github/issues": "github-issues",
        "ok-name": "ok-name",
        "my:server": "my-server-2",
        " spaced ": "spaced",
        "-": "server-2",  # "server" is a valid key of its own: it keeps its name
        "ok-name ": "ok-name-2",
        "server": "server",
    }


def _desktop_file(tmp_path: Path, keys: list[str]) -> Path:
    stdio = fastmcp_server("basic", "stdio")
    servers = {k: {"command": stdio[0], "args": [*stdio[1:], "--name", k]} for k in keys}
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def test_config_and_import_give_the_same_backend_names(tmp_path: Path) -> None:
    path = _desktop_file(tmp_path, KEYS)
    loaded = [b.name for b in load_config(path).backends]
    imported = import_file(path)
    assert loaded == [b.name for b in imported.config.backends]
    assert loaded == list(mcp_server_backend_names(KEYS).values())
    assert "server 'my server' is imported as backend 'my-server'" in imported.warnings


def test_check_accepts_a_desktop_file_whose_server_key_has_a_space(tmp_path: Path) -> None:
    """As the README says: an mcpServers file is accepted as-is by ``--config``."""
    path = _desktop_file(tmp_path, ["basic server"])
    proc = subprocess.run(
        [PYTHON, "-m", "mcp_router.cli", "check", "--config", str(path), "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=100,
        env=child_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "basic-server_whoami" in proc.stdout
