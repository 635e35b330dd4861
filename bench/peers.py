"""The single-server bridges the router is measured against in run 7 (HTTP front -> stdio).

- npm ``supergateway@4.0.0`` (from the project's ``node_modules``, run with Node from there):
  ``supergateway --stdio CMD --outputTransport streamableHttp --stateful --port N``, endpoint
  ``/mcp``;
- PyPI ``mcp-proxy==0.13.0`` (sparfenyuk). It pins mcp 1.x, so it lives in a venv of its own,
  ``bench/.peers/mcp-proxy`` (gitignored), created on first use with uv (Python 3.12):
  ``mcp-proxy --host 127.0.0.1 --port N --named-server backend CMD``, endpoint
  ``/servers/backend/mcp``.

Both bridge one stdio server to streamable HTTP; neither aggregates.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from bench.procs import BENCH, ROOT

PEERS = BENCH / ".peers"
MCP_PROXY_VERSION = "0.13.0"
SUPERGATEWAY_VERSION = "4.0.0"  # what package.json pins
MCP_PROXY_VENV = PEERS / "mcp-proxy"
SUPERGATEWAY = ROOT / "node_modules" / ".bin" / "supergateway"
NODE_BIN = ROOT / "node_modules" / ".bin"


class PeerUnavailable(RuntimeError):
    """A bridge cannot be run here (not installed, and could not be installed)."""


def _python312() -> str:
    """A Python 3.12 for uv: pyenv's if there is one (uv would otherwise try to download)."""
    pyenv = shutil.which("pyenv")
    if pyenv:
        found = subprocess.run(
            [pyenv, "prefix", "3.12"], capture_output=True, text=True, timeout=30, check=False
        )
        prefix = found.stdout.strip().splitlines()[:1]
        if found.returncode == 0 and prefix:
            exe = Path(prefix[0]) / "bin" / "python3.12"
            if exe.exists():
                return str(exe)
    return "3.12"


def mcp_proxy_exe() -> Path:
    """``mcp-proxy`` in its own venv; the venv is created (bounded) if it is missing."""
    exe = MCP_PROXY_VENV / "bin" / "mcp-proxy"
    if exe.exists():
        return exe
    uv = shutil.which("uv")
    if uv is None:
        raise PeerUnavailable("uv is not installed: cannot create the mcp-proxy venv")
    print(f"   creating {MCP_PROXY_VENV.relative_to(ROOT)} (mcp-proxy=={MCP_PROXY_VERSION})")
    steps = [
        [uv, "venv", "-q", "--python", _python312(), str(MCP_PROXY_VENV)],
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(MCP_PROXY_VENV),
            f"mcp-proxy=={MCP_PROXY_VERSION}",
        ],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            shutil.rmtree(MCP_PROXY_VENV, ignore_errors=True)
            raise PeerUnavailable(f"{' '.join(step[:3])} failed: {done.stderr.strip()[-300:]}")
    if not exe.exists():
        raise PeerUnavailable(f"{exe} missing after installing mcp-proxy")
    return exe


def mcp_proxy_cmd(stdio_cmd: list[str], port: int) -> tuple[list[str], str]:
    """Command line and MCP URL of mcp-proxy bridging ``stdio_cmd``."""
    cmd = [
        str(mcp_proxy_exe()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--pass-environment",  # the run marker reaches the child, so the final sweep sees it
        "--named-server",
        "backend",
        shlex.join(stdio_cmd),
    ]
    return cmd, f"http://127.0.0.1:{port}/servers/backend/mcp"


def supergateway_cmd(stdio_cmd: list[str], port: int) -> tuple[list[str], str]:
    """Command line and MCP URL of supergateway bridging ``stdio_cmd``."""
    if not SUPERGATEWAY.exists():
        raise PeerUnavailable(f"{SUPERGATEWAY} missing: run `npm ci`")
    cmd = [
        str(NODE_BIN / "node"),
        str(SUPERGATEWAY.resolve()),
        "--stdio",
        shlex.join(stdio_cmd),
        "--outputTransport",
        "streamableHttp",
        "--stateful",
        "--port",
        str(port),
    ]
    return cmd, f"http://127.0.0.1:{port}/mcp"


def peer_env(base: dict[str, str]) -> dict[str, str]:
    """The environment for a bridge: Node 22 from node_modules first on PATH."""
    env = dict(base)
    env["PATH"] = os.pathsep.join([str(NODE_BIN), env.get("PATH", "")])
    return env
