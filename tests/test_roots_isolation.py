"""Roots are per-client data: no client is ever served another client's roots.

Real servers that cache the roots of their session behind a real router (HTTP front), driven
by SDK clients with different roots, concurrently:
- ``@modelcontextprotocol/server-filesystem`` asks for roots right after ``initialized`` and
  then serves only those directories (its command-line directory otherwise);
- ``@modelcontextprotocol/server-everything``'s ``get-roots-list`` shows the roots it got.

With ``session_mode: per_client`` each client's session asks that client (even outside any
call), and ``notifications/roots/list_changed`` from a client reaches its sessions. A shared
session declares no roots (backends/capabilities.py), so the servers use their own defaults
for every client rather than the roots of whichever client came first.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from support import EVERYTHING, NODE_BIN, run_router, write_config

FILESYSTEM = NODE_BIN / "mcp-server-filesystem"

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not (EVERYTHING.exists() and FILESYSTEM.exists()),
        reason="run `npm ci` for server-everything and server-filesystem (package.json)",
    ),
]


class Roots:
    """A client's roots, changeable; counts how often the client was asked."""

    def __init__(self, *dirs: Path) -> None:
        self.dirs = list(dirs)
        self.asked = 0

    async def __call__(self, _context: Any) -> types.ListRootsResult:
        self.asked += 1
        return types.ListRootsResult(
            roots=[types.Root(uri=d.as_uri(), name=d.name) for d in self.dirs]
        )


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Directories: the server's command-line one, and one per client."""
    base = tmp_path_factory.mktemp("roots")
    made = {name: base / name for name in ("cmdline", "a", "b", "a2")}
    for path in made.values():
        path.mkdir()
        (path / f"{path.name}.txt").write_text(path.name)
    return {name: path.resolve() for name, path in made.items()}


def _config(path: Path, cmdline: Path, **extra: Any) -> Path:
    return write_config(
        path,
        [
            {"name": "every", "command": str(EVERYTHING), "args": ["stdio"], **extra},
            {"name": "fs", "command": str(FILESYSTEM), "args": [str(cmdline)], **extra},
        ],
    )


@pytest.fixture(scope="module")
def per_client_url(
    tmp_path_factory: pytest.TempPathFactory, dirs: dict[str, Path]
) -> Iterator[str]:
    """A router whose two backends give each client its own session."""
    config = _config(
        tmp_path_factory.mktemp("per-client") / "backends.yaml",
        dirs["cmdline"],
        session_mode="per_client",
    )
    with run_router(config, timeout=60) as router:
        base = router.base
        yield f"{base}/mcp"


@pytest.fixture(scope="module")
def shared_url(tmp_path_factory: pytest.TempPathFactory, dirs: dict[str, Path]) -> Iterator[str]:
    """A router whose two backends are shared by every client (the default)."""
    config = _config(tmp_path_factory.mktemp("shared") / "backends.yaml", dirs["cmdline"])
    with run_router(config, timeout=60) as router:
        base = router.base
        yield f"{base}/mcp"


@contextlib.asynccontextmanager
async def client(url: str, roots: Roots | None) -> AsyncIterator[Client]:
    """A handshake-era client over HTTP, declaring roots when it has some."""
    async with Client(url, mode="legacy", list_roots_callback=roots) as c:
        yield c


def text(result: types.CallToolResult) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def allowed_dirs(c: Client) -> list[str]:
    """What server-filesystem says this client may access."""
    result = await c.call_tool("fs_list_allowed_directories", {})
    assert not result.is_error, text(result)
    return [line for line in text(result).splitlines()[1:] if line]


async def settled_dirs(c: Client, want: Path, cmdline: Path, timeout: float = 30.0) -> list[str]:
    """server-filesystem's directories once it applied the roots it asked for.

    It asks right after ``initialized`` and serves calls meanwhile (with its command-line
    directory), directly connected or not; so wait for the answer to land, and fail at once
    on any other directory (another client's roots).
    """
    deadline = time.monotonic() + timeout
    while True:
        got = await allowed_dirs(c)
        assert got in ([str(want)], [str(cmdline)]), f"served directories {got}"
        if got == [str(want)] or time.monotonic() > deadline:
            return got
        await anyio.sleep(0.2)


async def test_per_client_sessions_ask_each_client_for_its_own_roots_concurrently(
    per_client_url: str, dirs: dict[str, Path]
) -> None:
    roots_a, roots_b = Roots(dirs["a"]), Roots(dirs["b"])
    seen: dict[str, Any] = {}

    async def run(name: str, roots: Roots | None) -> None:
        async with client(per_client_url, roots) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            want = roots.dirs[0] if roots else dirs["cmdline"]
            seen[name] = {"dirs": await settled_dirs(c, want, dirs["cmdline"])}
            seen[name]["has_roots_tool"] = False
            if "every_get-roots-list" in names:
                seen[name]["has_roots_tool"] = True
                seen[name]["roots"] = text(await c.call_tool("every_get-roots-list", {}))

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "a", roots_a)
            tg.start_soon(run, "b", roots_b)
            tg.start_soon(run, "none", None)

    # server-filesystem asked right after initialize, outside any call: the owner answered
    assert seen["a"]["dirs"] == [str(dirs["a"])]
    assert seen["b"]["dirs"] == [str(dirs["b"])]
    assert seen["none"]["dirs"] == [str(dirs["cmdline"])]  # no roots: the server's default
    assert seen["a"]["has_roots_tool"] and seen["b"]["has_roots_tool"]
    assert dirs["a"].as_uri() in seen["a"]["roots"] and dirs["b"].as_uri() not in seen["a"]["roots"]
    assert dirs["b"].as_uri() in seen["b"]["roots"] and dirs["a"].as_uri() not in seen["b"]["roots"]
    assert not seen["none"]["has_roots_tool"], "a client without roots got the roots tool"
    assert roots_a.asked >= 1 and roots_b.asked >= 1


async def test_roots_list_changed_from_a_client_makes_its_sessions_ask_it_again(
    per_client_url: str, dirs: dict[str, Path]
) -> None:
    roots_a, roots_b = Roots(dirs["a"]), Roots(dirs["b"])
    with anyio.fail_after(90):
        async with client(per_client_url, roots_a) as a, client(per_client_url, roots_b) as b:
            assert await settled_dirs(a, dirs["a"], dirs["cmdline"]) == [str(dirs["a"])]
            assert await settled_dirs(b, dirs["b"], dirs["cmdline"]) == [str(dirs["b"])]
            # each of b's two sessions asks b once after initialize (server-everything 350 ms
            # later): let both land before counting
            deadline = time.monotonic() + 20
            while roots_b.asked < 2:
                assert time.monotonic() < deadline, f"b was asked {roots_b.asked} times"
                await anyio.sleep(0.1)
            await anyio.sleep(0.5)
            asked_b = roots_b.asked
            roots_a.dirs = [dirs["a2"]]
            await a.session.send_notification(types.RootsListChangedNotification())
            deadline = time.monotonic() + 30
            while await allowed_dirs(a) != [str(dirs["a2"])]:
                assert time.monotonic() < deadline, "server-filesystem never re-read a's roots"
                await anyio.sleep(0.2)
            assert await allowed_dirs(b) == [str(dirs["b"])]
            assert roots_b.asked == asked_b, "another client's list_changed asked b"


async def test_shared_session_serves_no_client_another_clients_roots(
    shared_url: str, dirs: dict[str, Path]
) -> None:
    roots_a, roots_b = Roots(dirs["a"]), Roots(dirs["b"])
    direct = StdioServerParameters(command=str(EVERYTHING), args=["stdio"])
    with anyio.fail_after(90):
        async with (
            client(shared_url, roots_a) as a,
            client(shared_url, roots_b) as b,
            client(shared_url, None) as c,
            Client(direct, mode="legacy") as plain,
        ):
            for routed in (a, b, c):
                # the shared session never declares roots: each client gets the server's
                # default directory, never the roots of the client that came first
                assert await allowed_dirs(routed) == [str(dirs["cmdline"])]
                names = {t.name for t in (await routed.list_tools()).tools}
                assert "every_get-roots-list" not in names
                result = await routed.call_tool("every_get-roots-list", {})
                assert result.is_error, "the roots tool must not answer on a shared session"
                assert str(dirs["a"]) not in text(result) and str(dirs["b"]) not in text(result)
            # the same tools a direct client without roots sees
            direct_names = {f"every_{t.name}" for t in (await plain.list_tools()).tools}
            routed_names = {t.name for t in (await a.list_tools()).tools}
            assert {n for n in routed_names if n.startswith("every_")} == direct_names
    assert roots_a.asked == 0 and roots_b.asked == 0, "a shared session asked a client for roots"
