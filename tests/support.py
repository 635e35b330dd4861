"""Test support: real processes on loopback, bounded in time, always cleaned up."""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import httpx2
import yaml
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

if TYPE_CHECKING:
    from mcp_router.config.models import RouterConfig
    from mcp_router.gateway.server import Router

ROOT = Path(__file__).resolve().parent.parent
SERVERS = Path(__file__).resolve().parent / "servers"
PYTHON = sys.executable
NODE_BIN = ROOT / "node_modules" / ".bin"
EVERYTHING = NODE_BIN / "mcp-server-everything"

MANAGEMENT_TOOLS = frozenset(
    {"router_list_backends", "router_get_backend_health", "router_get_routing_info"}
)
"""The router's own tools, listed next to the backends' in every mode."""

SEARCH_TOOLS = frozenset({"router_search_tools", "router_call_tool"})
"""The tools ``routing.tool_discovery: search`` adds."""

STDERR_TAIL = 4000  # characters of a child's stderr quoted when it fails to start

T = TypeVar("T")


MIN_NODE = 22  # conformance 0.2 and the Inspector 2.x need it; npm installs node@22 locally


def node22_dir() -> Path | None:
    """The folder of a Node >= 22 binary: ``node_modules/.bin`` (npm ``node@22``) or the system."""
    system = shutil.which("node")
    for candidate in (NODE_BIN / "node", Path(system) if system else None):
        if candidate is not None and candidate.exists():
            try:
                out = subprocess.run(
                    [str(candidate), "--version"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                    check=True,
                ).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            m = re.match(r"v(\d+)\.", out.strip())
            if m and int(m.group(1)) >= MIN_NODE:
                return candidate.parent
    return None


def free_port() -> int:
    """An ephemeral port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The environment for child processes (unbuffered, quiet banners)."""
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "FASTMCP_SHOW_SERVER_BANNER": "false"})
    env.update(extra)
    return env


def kill_group(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Stop a child started with start_new_session=True, and everything in its group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers left in the group


def _not_yet(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"{what}: not within {timeout}s (last seen: {last!r})")


def wait_until(
    predicate: Callable[[], T], timeout: float, what: str, *, interval: float = 0.05
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; fail naming
    ``what`` never happened. For synchronous tests; async tests use :func:`wait_until_async`."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise _not_yet(what, timeout, value)
        time.sleep(interval)
    return value


async def wait_until_async(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
) -> T:
    """:func:`wait_until` for async tests: ``predicate`` may be sync or async, the loop keeps
    running while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise _not_yet(what, timeout, value)
        await anyio.sleep(interval)


def wait_http(
    url: str,
    timeout: float = 20.0,
    proc: subprocess.Popen[Any] | None = None,
    *,
    status: int | None = None,
    interval: float = 0.05,
) -> float:
    """Wait until ``url`` answers (with ``status`` if given); return the monotonic time it did."""
    deadline = time.monotonic() + timeout
    last: object = None
    with httpx2.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
            try:
                response = http.get(url)
                if status is None or response.status_code == status:
                    return time.monotonic()
                last = response.status_code
            except httpx2.HTTPError as exc:  # not listening yet
                last = exc
            time.sleep(interval)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


@contextlib.contextmanager
def spawn(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    ready_url: str | None = None,
    timeout: float = 20.0,
    stderr: Any = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[Any]]:
    """Start a process in its own group; wait for ``ready_url``; kill the group afterwards."""
    proc = subprocess.Popen(
        list(cmd),
        env=env or child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr if stderr is not None else subprocess.DEVNULL,
        start_new_session=True,
        cwd=cwd,
    )
    try:
        if ready_url:
            wait_http(ready_url, timeout, proc)
        yield proc
    finally:
        kill_group(proc)


def fastmcp_server(name: str, transport: str, port: int | None = None) -> list[str]:
    """Command line of a test server in tests/servers/ (``name`` without .py)."""
    cmd = [PYTHON, str(SERVERS / f"{name}.py"), "--transport", transport]
    if port is not None:
        cmd += ["--port", str(port)]
    return cmd


def write_config(
    path: Path, backends: list[dict[str, Any]], routing: dict[str, Any] | None = None
) -> Path:
    """Write a backends.yaml and return its path."""
    data: dict[str, Any] = {"backends": backends}
    if routing:
        data["routing"] = routing
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def router_cmd(config: Path | None, *args: str) -> list[str]:
    """Command line that runs the router from this checkout (no config: the built-in one)."""
    chosen = ["--config", str(config)] if config is not None else []
    return [PYTHON, "-m", "mcp_router.cli", *chosen, *args]


def _tail(log: Path) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return text[-STDERR_TAIL:]


class RouterProcess:
    """A router subprocess over HTTP or SSE; its stderr goes to ``log``."""

    def __init__(self, proc: subprocess.Popen[Any], base: str, transport: str, log: Path) -> None:
        self.proc = proc
        self.base = base
        self.url = f"{base}/sse" if transport == "sse" else f"{base}/mcp"
        self.log = log

    def stderr(self) -> str:
        """What the router has logged so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, needle: str, timeout: float = 15.0, start: int = 0) -> str:
        """Wait until the log (from character ``start`` on) contains ``needle``; the whole log."""

        def logged() -> str:
            if self.proc.poll() is not None:
                raise AssertionError(f"router exited ({self.proc.returncode}):\n{_tail(self.log)}")
            text = self.stderr()
            return text if needle in text[start:] else ""

        try:
            return wait_until(logged, timeout, f"router logs {needle!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- router stderr (end) ---\n{_tail(self.log)}") from None


@contextlib.contextmanager
def run_router(
    config: Path | None,
    log: Path | None = None,
    *,
    transport: str = "http",
    env: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
    port: int | None = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
) -> Iterator[RouterProcess]:
    """Run the router over HTTP/SSE on a free loopback port; yield once ``/ready`` answers 200.

    ``argv`` replaces the command line (it must then listen on ``port``); ``env`` is the whole
    environment (default :func:`child_env`). stderr goes to ``log`` (a temporary file if not
    given). A router that exits or is not ready within ``timeout`` fails the test with the end
    of its stderr.
    """
    with contextlib.ExitStack() as stack:
        if log is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "router.log"
        if argv is None:
            port = free_port()
            argv = router_cmd(config, "--transport", transport, "--port", str(port))
        assert port is not None, "a custom argv needs the port it listens on"
        base = f"http://127.0.0.1:{port}"
        with log.open("wb") as stderr:
            proc = stack.enter_context(
                spawn(argv, env=dict(env) if env else None, stderr=stderr, cwd=cwd)
            )
        with httpx2.Client(timeout=2.0) as http:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"router exited with {proc.returncode}")
                try:
                    answer = http.get(f"{base}/ready")
                except httpx2.HTTPError:  # not listening yet
                    return False
                # before discovery is done /ready says 503; anything else is a bug
                assert answer.status_code in (200, 503), f"/ready answered {answer.status_code}"
                return answer.status_code == 200

            try:
                wait_until(ready, timeout, "router /ready answers 200")
            except AssertionError as exc:
                raise AssertionError(
                    f"router never became ready: {exc}\n--- router stderr (end) ---\n{_tail(log)}"
                ) from None
        yield RouterProcess(proc, base, transport, log)


@contextlib.asynccontextmanager
async def router_stdio(
    config: Path | None,
    *,
    mode: str = "legacy",
    env: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
    **client_options: Any,
) -> AsyncIterator[Client]:
    """An MCP client that launches the router over stdio, as Claude Code does.

    ``command`` replaces ``python -m mcp_router.cli --config CONFIG``. The connection (process
    start and handshake) is bounded by ``timeout``; when it fails the test fails with the end
    of the router's stderr. Other keywords go to :class:`mcp.Client`.
    """
    argv = list(command) if command else router_cmd(config)
    params = StdioServerParameters(
        command=argv[0], args=argv[1:], env=dict(env) if env else child_env(), cwd=cwd
    )
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "router.log"
        with log.open("w", encoding="utf-8") as errlog:
            client = Client(stdio_client(params, errlog=errlog), mode=mode, **client_options)
            connected = False
            try:
                with anyio.fail_after(timeout) as scope:
                    async with client:
                        connected = True
                        scope.deadline = math.inf  # the bound is for connecting only
                        yield client
            except Exception as exc:
                if connected:
                    raise
                errlog.flush()
                raise AssertionError(
                    f"router over stdio did not connect within {timeout}s: {exc!r}\n"
                    f"--- router stderr (end) ---\n{_tail(log)}"
                ) from None


@contextlib.asynccontextmanager
async def in_process_router(config: Path | RouterConfig, **settings: Any) -> AsyncIterator[Router]:
    """The router for ``config``, started in this process; stopped (backends too) afterwards.

    ``start()`` returns once discovery is done (or bounded start-up gave up), like ``/ready``.
    ``settings`` are :func:`mcp_router.settings.load_settings` keywords.
    """
    from mcp_router.config import load_effective_config
    from mcp_router.gateway.server import build_router
    from mcp_router.settings import load_settings

    if isinstance(config, Path):
        loaded = load_settings(backends_config=str(config), **settings)
        router = build_router(load_effective_config(loaded), loaded)
    else:
        router = build_router(config, load_settings(**settings))
    with anyio.fail_after(60):
        await router.start()
    try:
        yield router
    finally:
        await router.stop()


def router_client(router: Router, **client_options: Any) -> Client:
    """A client session of an in-process router's MCP server, in memory."""
    return Client(router.server._mcp_server, mode="legacy", **client_options)


@contextlib.asynccontextmanager
async def http_client(url: str, *, mode: str = "legacy") -> AsyncIterator[Client]:
    """An MCP client over streamable HTTP (mode "legacy" = handshake era, else 2026-07-28)."""
    async with Client(url, mode=mode) as client:
        yield client
