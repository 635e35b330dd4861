"""Official MCP servers behind the router, seen by three clients nobody on this project wrote.

The matrix is client x front x server, each cell a test id
(``test_matrix[<client>-<front>-<server>]``):

- clients: the mcp Python SDK, the TypeScript SDK (``tests/clients/ts_client.mjs``), and the
  MCP Inspector CLI (``npx inspector --cli``);
- fronts: the router's stdio (the client starts the router) and its streamable HTTP endpoint;
- servers, none needing the network: npm ``@modelcontextprotocol/server-filesystem``,
  ``server-memory``, ``server-sequential-thinking``, ``server-everything`` (as a stdio child
  and over streamable HTTP), and PyPI ``mcp-server-time`` and ``mcp-server-git`` (dev
  dependencies in uv.lock).

One router per front serves all seven servers. Every cell compares what the client sees through
the router with what the same client sees on a direct connection to the same server: the
tools/list definitions (verbatim but for the ``<server>_`` prefix) and one representative call.
Each client's routed results are gathered once per front (one session for the SDKs; the
Inspector CLI needs one process per method) and its direct results once per server.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from realclients import (
    INSPECTOR,
    TS_SDK,
    Call,
    Target,
    inspector_cli,
    missing,
    python_sdk,
    ts_sdk,
)
from support import EVERYTHING, NODE_BIN, PYTHON, child_env, free_port, run_router, spawn
from support import write_config as write_router_config

pytestmark = [
    pytest.mark.timeout(240),
    # One worker runs the whole module: its fixtures and per-client results are shared.
    pytest.mark.xdist_group("official-servers"),
]

VENV_BIN = Path(PYTHON).parent
FILESYSTEM = NODE_BIN / "mcp-server-filesystem"
MEMORY = NODE_BIN / "mcp-server-memory"
THINKING = NODE_BIN / "mcp-server-sequential-thinking"
TIME = VENV_BIN / "mcp-server-time"
GIT = VENV_BIN / "mcp-server-git"

CLIENTS = ["python-sdk", "ts-sdk", "inspector-cli"]
FRONTS = ["stdio-front", "http-front"]
SERVERS = [
    "filesystem",
    "memory",
    "thinking",
    "everything",
    "everything-http",
    "time",
    "git",
]
# server-everything lists these only to clients declaring roots / sampling / elicitation.
CAPABILITY_GATED = (
    "get-roots-list",
    "trigger-sampling-request",
    "trigger-elicitation-request",
    "trigger-url-elicitation",
)
CAPABILITIES_NOTE = (
    "A shared backend session declares what the client's profile declares (sampling, "
    "elicitation) but never roots: roots are per-client data a server caches per session, so "
    "a roots-gated tool is offered only with `session_mode: per_client`; any other difference "
    "is a bug."
)
ROOTS_GATED = frozenset({"get-roots-list"})
PARALLEL = 3  # client runs gathered at the same time
# The Inspector CLI runs one method per process, and over the stdio front each process starts
# a router with all seven servers (~7 s of CPU): its stdio-front cells compare tools/list only.
# Its calls are compared over the HTTP front, and over stdio in test_real_clients.py (demo_echo).


@dataclass
class World:
    """The files the servers work on, the HTTP server-everything, and both router fronts."""

    tmp: Path
    files: Path
    repo: Path
    everything_url: str
    configs: dict[str, Path]
    router_url: str

    def memory_file(self, who: str) -> Path:
        return self.tmp / f"memory-{who}.jsonl"


def _git_repo(path: Path) -> Path:
    path.mkdir()
    env = child_env(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
        GIT_AUTHOR_DATE="2026-01-01T00:00:00Z",
        GIT_COMMITTER_DATE="2026-01-01T00:00:00Z",
    )
    (path / "README.md").write_text("a repository for mcp-server-git\n")
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "README.md"],
        ["git", "commit", "-q", "-m", "first commit"],
    ):
        subprocess.run(argv, cwd=path, env=env, check=True, timeout=30, capture_output=True)
    return path


def server_command(world: World, server: str, memory: Path) -> list[str]:
    """The stdio command line of a server (server-everything over HTTP has none)."""
    commands = {
        "filesystem": [str(FILESYSTEM), str(world.files)],
        "memory": [str(MEMORY)],
        "thinking": [str(THINKING)],
        "everything": [str(EVERYTHING), "stdio"],
        "time": [str(TIME), "--local-timezone", "UTC"],
        "git": [str(GIT), "--repository", str(world.repo)],
    }
    return commands[server]


def server_env(server: str, memory: Path) -> dict[str, str]:
    return {"MEMORY_FILE_PATH": str(memory)} if server == "memory" else {}


def direct_target(world: World, server: str, memory: Path) -> Target:
    if server == "everything-http":
        return Target(url=world.everything_url)
    return Target(command=server_command(world, server, memory), env=server_env(server, memory))


# A loaded machine can take longer than the default 10 s to start a Python server: the
# router then starts without it, and a stdio-front client would miss its tools.
CONNECT_TIMEOUT = 90


def backend(world: World, server: str, memory: Path) -> dict[str, Any]:
    if server == "everything-http":
        return {"name": server, "url": world.everything_url}
    command = server_command(world, server, memory)
    entry: dict[str, Any] = {
        "name": server,
        "command": command[0],
        "args": command[1:],
        "connect_timeout_seconds": CONNECT_TIMEOUT,
    }
    if server_env(server, memory):
        entry["env"] = server_env(server, memory)
    return entry


def representative_call(world: World, server: str, client: str) -> Call:
    """One call per server; server-memory gets a name unique to the client (its graph persists
    in a file: one per router front and one per client's direct connection)."""
    calls: dict[str, Call] = {
        "filesystem": ("read_text_file", {"path": str(world.files / "notes.txt")}),
        "memory": (
            "create_entities",
            {
                "entities": [
                    {
                        "name": f"router-{client}",
                        "entityType": "test",
                        "observations": ["created through mcp-router"],
                    }
                ]
            },
        ),
        "thinking": (
            "sequentialthinking",
            {
                "thought": "Route every call to the server that owns the tool.",
                "thoughtNumber": 1,
                "totalThoughts": 1,
                "nextThoughtNeeded": False,
            },
        ),
        "everything": ("echo", {"message": "héllo, router"}),
        "everything-http": ("get-sum", {"a": 2, "b": 40.5}),
        "time": (
            "convert_time",
            {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
        ),
        "git": ("git_log", {"repo_path": str(world.repo), "max_count": 5}),
    }
    return calls[server]


# What each server must answer (so that a call broken both ways still fails the test).
EXPECTED_TEXT: dict[str, str] = {
    "filesystem": "notes for server-filesystem",
    "memory": "created through mcp-router",
    "thinking": '"thoughtNumber": 1',
    "everything": "Echo: héllo, router",
    "everything-http": "The sum of 2 and 40.5 is 42.5.",
    "time": "Asia/Tokyo",
    "git": "first commit",
}


def _without_history_length(value: Any) -> Any:
    # server-sequential-thinking counts thoughts per process; the HTTP router's one backend
    # session serves every client, so its count differs from a fresh direct connection's.
    if isinstance(value, dict):
        return {
            k: _without_history_length(v) for k, v in value.items() if k != "thoughtHistoryLength"
        }
    return value


def normalise(server: str, result: dict[str, Any]) -> dict[str, Any]:
    """A call result with the fields that legitimately differ between connections removed."""
    out = dict(result)
    # isError defaults to false; the router writes it out when the backend left it out.
    if out.get("isError") is False:
        del out["isError"]
    meta = {k: v for k, v in (out.pop("_meta", None) or {}).items() if "serverInfo" not in k}
    if meta:
        out["_meta"] = meta
    if server == "thinking":
        out["content"] = [
            {**c, "text": json.dumps(_without_history_length(json.loads(c["text"])))}
            if c.get("type") == "text"
            else c
            for c in out.get("content", [])
        ]
        if "structuredContent" in out:
            out["structuredContent"] = _without_history_length(out["structuredContent"])
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The servers' files, server-everything over HTTP, and the HTTP router before all seven."""
    reasons = [
        f"{p.name} missing: run `npm ci` (package.json pins it)"
        for p in (FILESYSTEM, MEMORY, THINKING, EVERYTHING)
        if not p.exists()
    ] + [f"{p.name} missing: run `uv sync` (dev dependency)" for p in (TIME, GIT) if not p.exists()]
    if reasons:
        pytest.skip("; ".join(reasons))
    tmp = tmp_path_factory.mktemp("official")
    files = tmp / "files"
    files.mkdir()
    (files / "notes.txt").write_text("notes for server-filesystem\n")
    repo = _git_repo(tmp / "repo")
    port = free_port()
    everything_url = f"http://127.0.0.1:{port}/mcp"
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            spawn(
                [str(EVERYTHING), "streamableHttp"],
                env=child_env(PORT=str(port)),
                ready_url=everything_url,
                timeout=40,
            )
        )
        world = World(tmp, files, repo, everything_url, {}, "")
        for front in FRONTS:
            # One memory file per front: each front's router has its own graph.
            memory = world.memory_file(f"router-{front}")
            world.configs[front] = write_router_config(
                tmp / f"{front}.yaml", [backend(world, s, memory) for s in SERVERS]
            )
        router = run_router(world.configs["http-front"], tmp / "router-http.log", timeout=90)
        base = stack.enter_context(router).base
        world.router_url = f"{base}/mcp"
        yield world


def router_target(world: World, front: str) -> Target:
    if front == "http-front":
        return Target(url=world.router_url)
    return Target(command=[PYTHON, "-m", "mcp_router.cli", "--config", str(world.configs[front])])


Runner = Callable[[Target, list[Call]], dict[str, Any]]


def runner(client: str, world: World) -> Runner:
    """A synchronous ``(target, calls) -> {"tools", "calls"}`` for a client."""
    if client == "python-sdk":
        return lambda target, calls: anyio.run(python_sdk, target, calls)
    if client == "ts-sdk":
        reason = missing(TS_SDK)
        if reason:
            pytest.skip(reason)
        return ts_sdk
    reason = missing(INSPECTOR)
    if reason:
        pytest.skip(reason)
    # A HOME of its own per run: runs go in parallel and the Inspector keeps a catalog there.
    return lambda target, calls: inspector_cli(
        target, calls, home=Path(tempfile.mkdtemp(dir=world.tmp, prefix="inspector-home-"))
    )


_routed: dict[tuple[str, str], dict[str, Any] | Exception] = {}
_direct: dict[tuple[str, str], dict[str, Any] | Exception] = {}


def _cached(
    cache: dict[tuple[str, str], dict[str, Any] | Exception],
    key: tuple[str, str],
    get: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """``get()`` once per key; a failure is kept too, so that each cell does not redo it."""
    if key not in cache:
        try:
            cache[key] = get()
        except Exception as exc:
            cache[key] = exc
    value = cache[key]
    if isinstance(value, Exception):
        raise AssertionError(f"gathering {key} failed: {value}") from value
    return value


def inspector_calls_stdio(client: str, front: str) -> bool:
    """Whether a cell makes its call: not the Inspector over the stdio front (see above)."""
    return not (client == "inspector-cli" and front == "stdio-front")


def routed_results(world: World, client: str, front: str) -> dict[str, Any]:
    """What ``client`` sees through ``front``: every tool, and each server's call in order."""

    def get() -> dict[str, Any]:
        calls = [representative_call(world, s, client) for s in SERVERS]
        routed_calls = [(f"{s}_{n}", args) for s, (n, args) in zip(SERVERS, calls, strict=True)]
        if not inspector_calls_stdio(client, front):
            routed_calls = []
        return runner(client, world)(router_target(world, front), routed_calls)

    return _cached(_routed, (client, front), get)


def direct_results(world: World, client: str, server: str) -> dict[str, Any]:
    """What ``client`` sees on a direct connection: the tools and the representative call."""

    def get() -> dict[str, Any]:
        memory = world.memory_file(f"direct-{client}")
        calls = [representative_call(world, server, client)]
        return runner(client, world)(direct_target(world, server, memory), calls)

    return _cached(_direct, (client, server), get)


_prefetched: set[str] = set()


def prefetch(world: World, client: str) -> None:
    """Gather all of a client's results at once, a few processes at a time (they spend most of
    their time starting servers and waiting on each other, not computing)."""
    if client in _prefetched:
        return
    _prefetched.add(client)
    runner(client, world)  # skips here, once, when the client is not installed
    with ThreadPoolExecutor(PARALLEL) as pool:
        jobs = [pool.submit(routed_results, world, client, front) for front in FRONTS]
        jobs += [pool.submit(direct_results, world, client, server) for server in SERVERS]
        for job in jobs:
            with contextlib.suppress(AssertionError):  # kept in the cache; the cell reports it
                job.result()


def _text(result: dict[str, Any]) -> str:
    return "\n".join(c.get("text", "") for c in result.get("content", []))


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("client", CLIENTS)
def test_matrix(world: World, client: str, front: str, server: str) -> None:
    """Through the router, ``client`` lists the server's tools verbatim (prefixed) and gets the
    same answer to its representative call as on a direct connection."""
    prefetch(world, client)
    routed = routed_results(world, client, front)
    direct = direct_results(world, client, server)

    prefix = f"{server}_"
    routed_tools = {
        t["name"][len(prefix) :]: t for t in routed["tools"] if t["name"].startswith(prefix)
    }
    direct_tools = {t["name"]: t for t in direct["tools"]}
    extra = set(routed_tools) - set(direct_tools)
    assert all(name.startswith(CAPABILITY_GATED) for name in extra), (extra, CAPABILITIES_NOTE)
    missing = set(direct_tools) - set(routed_tools)
    assert missing <= ROOTS_GATED, (missing, CAPABILITIES_NOTE)
    for name, tool in direct_tools.items():
        if name in missing:
            continue
        seen = dict(routed_tools[name])
        assert seen.pop("name") == prefix + name
        expected = dict(tool)
        expected.pop("name")
        assert seen == expected, name

    if not inspector_calls_stdio(client, front):
        return
    routed_call = routed["calls"][SERVERS.index(server)]
    [direct_call] = direct["calls"]
    assert EXPECTED_TEXT[server] in _text(direct_call), direct_call
    assert normalise(server, routed_call) == normalise(server, direct_call)


def test_routed_tool_lists_hold_every_server_and_the_router_tools(world: World) -> None:
    """The Python SDK over the HTTP front sees all seven servers' tools and the router's own."""
    routed = routed_results(world, "python-sdk", "http-front")
    names = {t["name"] for t in routed["tools"]}
    assert {"router_list_backends", "router_get_backend_health"} <= names
    for server in SERVERS:
        assert any(n.startswith(f"{server}_") for n in names), server
