"""Shared fixtures: real processes on loopback that live as long as a test module.

Their stderr goes to a log file under the module's temporary directory; when one fails to
start, the error carries the end of its log.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import RouterProcess, fastmcp_server, free_port, run_router, spawn

_counter = itertools.count()

# Routers pin backend definitions in the user's state directory by default (MCP_PINS_FILE):
# tests and the routers they start keep theirs in a temporary one instead.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="mcp-router-state-")


def _options(options: dict[str, str]) -> list[str]:
    return [arg for k, v in options.items() for arg in (f"--{k.replace('_', '-')}", v)]


@contextlib.contextmanager
def logged(log: Path) -> Iterator[Any]:
    """An open log file for a child's stderr; a start-up failure is re-raised with its tail."""
    with log.open("w+b") as stream:
        try:
            yield stream
        except Exception as exc:
            stream.flush()
            tail = log.read_bytes()[-4000:].decode(errors="replace")
            raise RuntimeError(f"{exc}\n--- {log.name} (end) ---\n{tail}") from exc


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A temporary directory shared by one test module (configs, logs)."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def module_processes() -> Iterator[contextlib.ExitStack]:
    """An ExitStack for processes shared by one test module; all are killed at its end."""
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture(scope="module")
def start_server(module_processes: contextlib.ExitStack, module_tmp: Path) -> Callable[..., str]:
    """``start_server(name, transport, **options)``: run ``tests/servers/<name>.py`` over http or
    sse for the module and return its MCP URL (``http://127.0.0.1:PORT/mcp`` or ``.../sse``).

    Keyword options become ``--key value`` arguments (e.g. ``name="alpha"``).
    """

    def start(server: str, transport: str, **options: str) -> str:
        assert transport in ("http", "sse"), "stdio servers are started by their client"
        port = free_port()
        url = f"http://127.0.0.1:{port}/{'mcp' if transport == 'http' else 'sse'}"
        log = module_tmp / f"{server}-{transport}-{next(_counter)}.log"
        with logged(log) as stderr:
            # any HTTP answer on the port means uvicorn is listening
            module_processes.enter_context(
                spawn(
                    fastmcp_server(server, transport, port) + _options(options),
                    ready_url=f"http://127.0.0.1:{port}/",
                    stderr=stderr,
                )
            )
        return url

    return start


@pytest.fixture(scope="module")
def start_router(
    module_processes: contextlib.ExitStack, module_tmp: Path
) -> Callable[..., RouterProcess]:
    """``start_router(config, transport="http")``: run the router for the module (see
    :func:`support.run_router`); its stderr is kept in the module's temporary directory."""

    def start(config: Path, transport: str = "http") -> RouterProcess:
        log = module_tmp / f"router-{transport}-{next(_counter)}.log"
        return module_processes.enter_context(run_router(config, log, transport=transport))

    return start
