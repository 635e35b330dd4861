"""Client transports to one backend: stdio (a supervised child), streamable HTTP and SSE.

Built on the SDK's own transports. Two additions only: the read stream is observed so the
supervisor learns at once when a connection ends (a stdio child that died, a closed socket),
and a stdio child's stderr is forwarded line by line into the router's log.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TextIO

import httpx2
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcp_router.config.models import BackendConfig

logger = logging.getLogger("mcp_router.backend")

# Backends may hold a response stream open for long-running calls; the per-request timeout
# is enforced by the session, so the HTTP read timeout only guards against dead sockets.
_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)


class _EofObservingStream:
    """Wraps a transport's read stream and calls ``on_eof`` once when it ends."""

    def __init__(self, inner: Any, on_eof: Callable[[], None]) -> None:
        self._inner = inner
        self._on_eof = on_eof

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __aiter__(self) -> _EofObservingStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._inner.__anext__()
        except BaseException:
            self._on_eof()
            raise

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except BaseException:
            self._on_eof()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _EofObservingStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> Any:
        self._on_eof()
        return await self._inner.__aexit__(*exc)


def _forward_stderr(fd: int, backend: str) -> None:
    """Log each line the child writes to stderr (runs in a daemon thread until EOF)."""
    child_log = logging.getLogger(f"mcp_router.backend.{backend}")
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as pipe:
        for line in pipe:
            line = line.rstrip()
            if line:
                child_log.info("[%s stderr] %s", backend, line)


@asynccontextmanager
async def _stdio(config: BackendConfig) -> AsyncIterator[Any]:
    assert config.command is not None
    params = StdioServerParameters(
        command=config.command, args=list(config.args), env=dict(config.env) or None, cwd=config.cwd
    )
    read_fd, write_fd = os.pipe()
    threading.Thread(
        target=_forward_stderr,
        args=(read_fd, config.name),
        daemon=True,
        name=f"stderr-{config.name}",
    ).start()
    errlog: TextIO = os.fdopen(write_fd, "w")
    try:
        async with stdio_client(params, errlog=errlog) as streams:
            yield streams
    finally:
        # Our copy of the write end: once the child is gone too, the reader thread sees EOF.
        errlog.close()


def make_http_client(config: BackendConfig) -> httpx2.AsyncClient:
    """One pooled HTTP client per backend, kept across reconnects (SSL context built once)."""
    return httpx2.AsyncClient(headers=dict(config.headers), timeout=_HTTP_TIMEOUT)


@asynccontextmanager
async def open_transport(
    config: BackendConfig, http_client: httpx2.AsyncClient | None, on_eof: Callable[[], None]
) -> AsyncIterator[tuple[Any, Any]]:
    """Open the configured transport and yield its (read, write) streams."""
    if config.transport == "stdio":
        cm: Any = _stdio(config)
    elif config.transport == "sse":
        assert config.url is not None
        cm = sse_client(
            config.url, headers=dict(config.headers), timeout=_HTTP_TIMEOUT.connect or 30
        )
    else:
        assert config.url is not None and http_client is not None
        cm = streamable_http_client(config.url, http_client=http_client)
    async with cm as streams:
        read_stream, write_stream = streams[0], streams[1]
        yield _EofObservingStream(read_stream, on_eof), write_stream
