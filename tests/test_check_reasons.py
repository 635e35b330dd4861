"""``mcp-router check`` waits for slow first starts and says why a backend is down.

A first ``npx -y`` start downloads its package and can take longer than a backend's connect
timeout; ``check --timeout`` (default 120 s) raises every backend's connect timeout to at
least that. A backend that is still down is reported with the reason (the timeout it ran
into, the last error, a child's exit code) and what to do, never as ``DOWN (None)``.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from support import PYTHON, child_env, fastmcp_server, write_config

pytestmark = [pytest.mark.timeout(150)]


def _check(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "mcp_router.cli", "check", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
    )


def _slow_backend(name: str, delay: float, connect_timeout: float) -> dict[str, object]:
    """A stdio backend that answers only after ``delay`` seconds (like a first npx download)."""
    server = shlex.join(fastmcp_server("basic", "stdio"))
    return {
        "name": name,
        "command": "sh",
        "args": ["-c", f"sleep {delay}; exec {server}"],
        "connect_timeout_seconds": connect_timeout,
    }


def test_check_waits_past_the_backend_connect_timeout_for_a_slow_first_start(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "slow.yaml", [_slow_backend("slow", 4, 1)])
    proc = _check(config, "--timeout", "90")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "slow_whoami" in proc.stdout


def test_check_names_the_timeout_and_what_to_do_when_a_backend_is_still_starting(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "slow.yaml", [_slow_backend("slow", 60, 1)])
    proc = _check(config, "--timeout", "2")
    assert proc.returncode == 1
    assert "None" not in proc.stdout
    assert "DOWN (no answer" in proc.stdout, proc.stdout
    assert "not reachable: slow" in proc.stderr
    assert "within 2s" in proc.stderr
    assert "mcp-router check --timeout" in proc.stderr
    assert "connect_timeout_seconds" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_gives_the_exit_code_of_a_child_that_stops(tmp_path: Path) -> None:
    dies = {"name": "dies", "command": PYTHON, "args": ["-c", "import sys; sys.exit(3)"]}
    config = write_config(tmp_path / "dies.yaml", [dies])
    proc = _check(config, "--timeout", "5")
    assert proc.returncode == 1
    assert "dies: process exited with code 3" in proc.stderr, proc.stderr[-3000:]
    assert "run its command by hand" in proc.stderr


def test_check_rejects_a_timeout_that_is_not_positive(tmp_path: Path) -> None:
    config = write_config(tmp_path / "empty.yaml", [])
    proc = _check(config, "--timeout", "0", timeout=60)
    assert proc.returncode == 2
    assert "--timeout must be more than 0" in proc.stderr
