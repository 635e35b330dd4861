"""Drive MCP clients that this project did not write: Claude Code, MCP Inspector, the TS SDK.

Each runner takes a *target* (a stdio command line with its environment, or a streamable HTTP
URL) and a list of tool calls, and returns what the client saw in wire form (camelCase JSON):
``{"tools": [...], "calls": [...]}``. The Python SDK runner returns the same shape so that
tests can treat every client alike. The npm clients run on the Node 22 that ``npm ci``
installs into ``node_modules/.bin`` (package.json pins ``node``); Claude Code and Inspector 2.x
refuse older Node versions.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from support import MIN_NODE, NODE_BIN, ROOT, child_env, node22_dir

CLAUDE = NODE_BIN / "claude"
INSPECTOR = NODE_BIN / "inspector"
TS_CLIENT = ROOT / "tests" / "clients" / "ts_client.mjs"
TS_SDK = ROOT / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"


@dataclass
class Target:
    """Where a client connects: a stdio command (with extra env) or a streamable HTTP URL."""

    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None

    def __post_init__(self) -> None:
        assert (self.command is None) != (self.url is None), "a command or a URL"


Call = tuple[str, dict[str, Any]]


def missing(tool: Path) -> str | None:
    """Why an npm client cannot run here (None if it can)."""
    if not tool.exists():
        return f"{tool.name} missing: run `npm ci` (package.json pins it)"
    if node22_dir() is None:
        return f"Node >= {MIN_NODE} missing: run `npm ci` (package.json pins node@22)"
    return None


def node_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment for an npm client: Node 22 first on PATH, optionally a private HOME."""
    found = node22_dir()
    path = os.pathsep.join(
        [str(p) for p in (found, NODE_BIN) if p is not None] + [os.environ.get("PATH", "")]
    )
    env = child_env(PATH=path, **extra)
    if home is not None:
        env["HOME"] = str(home)
        # The clients look for updates or report telemetry otherwise; nothing here needs it.
        env.update(
            {
                "DISABLE_AUTOUPDATER": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "DO_NOT_TRACK": "1",
            }
        )
    return env


def run(
    argv: list[str], *, env: dict[str, str], cwd: Path | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run a client command to completion (bounded), capturing its output."""
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


# ------------------------------------------------------------------------------ clients


def _dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


async def python_sdk(target: Target, calls: list[Call], timeout: float = 90) -> dict[str, Any]:
    """The mcp Python SDK client (handshake era): list every tool, make each call."""
    source: StdioServerParameters | str
    if target.command is not None:
        source = StdioServerParameters(
            command=target.command[0], args=target.command[1:], env=child_env(**target.env)
        )
    else:
        assert target.url is not None
        source = target.url
    with anyio.fail_after(timeout):
        async with Client(source, mode="legacy") as client:
            tools = [_dump(t) for t in (await client.list_tools()).tools]
            results = [_dump(await client.call_tool(name, args)) for name, args in calls]
    return {"tools": tools, "calls": results}


def ts_sdk(target: Target, calls: list[Call], timeout: float = 90) -> dict[str, Any]:
    """``tests/clients/ts_client.mjs``: the TypeScript SDK's stdio / streamable HTTP client."""
    spec: dict[str, Any] = {"calls": [{"name": n, "arguments": a} for n, a in calls]}
    if target.command is not None:
        spec.update(
            transport="stdio",
            command=target.command[0],
            args=target.command[1:],
            env=child_env(**target.env),
        )
    else:
        spec.update(transport="http", url=target.url)
    result = run(["node", str(TS_CLIENT), json.dumps(spec)], env=node_env(), timeout=timeout)
    assert result.returncode == 0, f"ts_client exited {result.returncode}: {result.stderr[-3000:]}"
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _tool_args(arguments: dict[str, Any]) -> list[str]:
    # The Inspector parses each value as JSON when it can, else keeps it as a string.
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in arguments.items()]


def inspector_argv(target: Target, *method: str) -> list[str]:
    """``inspector --cli`` for one method against ``target``."""
    # A stdio router answers once its backends are connected: slow on a loaded machine.
    argv = [str(INSPECTOR), "--cli", "--connect-timeout", "90000", *method]
    if target.url is not None:
        return [*argv, "--transport", "http", target.url]
    assert target.command is not None
    for key, value in target.env.items():
        argv += ["-e", f"{key}={value}"]
    return [*argv, "--", *target.command]


def inspector_method(
    target: Target, *method: str, home: Path, timeout: float = 90
) -> dict[str, Any]:
    """One ``inspector --cli`` invocation; its JSON output (the method's result)."""
    result = run(inspector_argv(target, *method), env=node_env(home), cwd=home, timeout=timeout)
    assert result.returncode == 0, (
        f"inspector exited {result.returncode}: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    )
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def inspector_cli(
    target: Target, calls: list[Call], *, home: Path, timeout: float = 90
) -> dict[str, Any]:
    """The MCP Inspector CLI: one process for tools/list and one per call (that is its CLI)."""
    tools = inspector_method(target, "--method", "tools/list", home=home, timeout=timeout)
    results = []
    for name, arguments in calls:
        method = ["--method", "tools/call", "--tool-name", name]
        if arguments:
            method += ["--tool-arg", *_tool_args(arguments)]
        results.append(inspector_method(target, *method, home=home, timeout=timeout))
    return {"tools": tools["tools"], "calls": results}
