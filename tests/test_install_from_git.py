"""Installing straight from the repository: ``uvx --from git+<repo> mcp-router``.

The repository is this checkout's committed HEAD, cloned into a temporary folder and reached
as a ``git+file://`` URL, so the test needs no network but PyPI (the dependencies, from uv's
cache when they are there already) and shows what a user gets from the repository, not from
the working tree.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from support import ROOT, child_env, fastmcp_server, write_config

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("uvx") is None, reason="uvx (uv) is not on PATH"),
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not on PATH"),
    pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout"),
]


def test_uvx_from_a_git_url_runs_mcp_router_check(tmp_path: Path) -> None:
    clone = tmp_path / "mcp-router"
    subprocess.run(
        # Not --depth 1: uv cannot fetch from a shallow clone (it looks for origin/HEAD).
        ["git", "clone", "-q", "--single-branch", "--no-tags", f"file://{ROOT}", str(clone)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    stdio = fastmcp_server("basic", "stdio")
    config = write_config(
        tmp_path / "backends.yaml",
        [{"name": "basic", "command": stdio[0], "args": [*stdio[1:], "--name", "from-git"]}],
    )
    proc = subprocess.run(
        [
            "uvx",
            "--from",
            f"git+file://{clone}",
            "mcp-router",
            "check",
            "--config",
            str(config),
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env=child_env(),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "basic_whoami" in proc.stdout
    assert f"config: {config}" in proc.stdout
