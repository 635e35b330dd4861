"""Measurement primitives: percentiles, sequential latency, concurrent throughput, tools/list.

Every client is the SDK's own `mcp.Client` (mode legacy: the initialize handshake), the same
for the direct connection and for the router, so the difference is the router.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from bench.procs import INTERFERENCE


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on the sorted values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    """Median, NaN for no values."""
    return statistics.median(values) if values else math.nan


@dataclass
class Latency:
    """One sequential run: per-call latencies in milliseconds."""

    samples: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)


def client_for(target: str | StdioServerParameters | Any, mode: str = "legacy") -> Client:
    """The benchmark client: SDK Client, handshake era unless ``mode`` says otherwise ("auto":
    2026-07-28 first), no response cache.

    ``target``: a URL, stdio parameters, or an SDK transport (e.g. ``stdio_client(...)``).
    """
    return Client(target, mode=mode, cache=None)  # type: ignore[arg-type]


@asynccontextmanager
async def sessions(target: str | StdioServerParameters, count: int) -> AsyncIterator[list[Client]]:
    """Open ``count`` independent client sessions to ``target`` (each its own Client).

    Not bounded here (a cancel scope cannot span the sessions' own task groups): callers
    run inside `bounded()`.
    """
    async with AsyncExitStack() as stack:
        clients: list[Client] = []
        for _ in range(count):
            clients.append(await stack.enter_async_context(client_for(target)))
        yield clients


async def call_ok(client: Client, tool: str, args: dict[str, Any]) -> None:
    """One tools/call that must succeed."""
    result = await client.call_tool(tool, args)
    if result.is_error:
        raise RuntimeError(f"{tool} returned an error: {result.content}")


async def sequential(
    client: Client, tool: str, args: dict[str, Any], calls: int, timeout: float
) -> Latency:
    """``calls`` tools/call one after another; the latency of each in milliseconds."""
    samples: list[float] = []
    clock = time.perf_counter
    with anyio.fail_after(timeout), INTERFERENCE.window():
        for _ in range(calls):
            start = clock()
            result = await client.call_tool(tool, args)
            samples.append((clock() - start) * 1000)
            if result.is_error:
                raise RuntimeError(f"{tool} returned an error: {result.content}")
    return Latency(samples)


async def warm_up(clients: Sequence[Client], tool: str, args: dict[str, Any], calls: int) -> None:
    """A few calls on every session before measuring (connections, caches, JIT-free warm-up)."""
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for client in clients:

                async def run(c: Client = client) -> None:
                    for _ in range(calls):
                        await call_ok(c, tool, args)

                tg.start_soon(run)


@dataclass
class Throughput:
    """One fixed-duration window: completed calls and the window's length."""

    calls: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else math.nan


async def throughput(
    clients: Sequence[Client], tool: str, args: dict[str, Any], duration: float
) -> Throughput:
    """Every session calls back to back for ``duration`` seconds; count what completed in it.

    Calls still in flight at the deadline are awaited (so no session is left mid-request) but
    not counted.
    """
    clock = time.perf_counter
    completed = 0
    latencies: list[float] = []
    start = clock()
    deadline = start + duration

    async def worker(client: Client) -> None:
        nonlocal completed
        while True:
            t0 = clock()
            if t0 >= deadline:
                return
            await call_ok(client, tool, args)
            t1 = clock()
            if t1 <= deadline:
                completed += 1
                latencies.append((t1 - t0) * 1000)

    with anyio.fail_after(duration + 60), INTERFERENCE.window():
        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(worker, client)
    return Throughput(completed, duration, latencies)


async def list_all_tools(client: Client) -> int:
    """tools/list, following cursors, bypassing any client cache; the number of tools."""
    result = await client.list_tools(cache_mode="bypass")
    count = len(result.tools)
    pages = 1
    while result.next_cursor and pages < 1000:
        result = await client.list_tools(cursor=result.next_cursor, cache_mode="bypass")
        count += len(result.tools)
        pages += 1
    return count


async def list_latency(client: Client, calls: int, timeout: float) -> tuple[Latency, int]:
    """``calls`` full tools/list walks one after another; latencies (ms) and the tool count."""
    samples: list[float] = []
    count = 0
    clock = time.perf_counter
    with anyio.fail_after(timeout), INTERFERENCE.window():
        for _ in range(calls):
            start = clock()
            count = await list_all_tools(client)
            samples.append((clock() - start) * 1000)
    return Latency(samples), count


class RawSession:
    """A hand-rolled streamable HTTP session (httpx2, no SDK): measures the server alone.

    Sends initialize + notifications/initialized, then times requests by reading each
    response body completely, without parsing it into SDK models.
    """

    HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx2.AsyncClient(timeout=60)
        self.headers = dict(self.HEADERS)
        self._id = 0

    async def __aenter__(self) -> RawSession:
        init = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "bench-raw", "version": "1"},
        }
        response = await self._post("initialize", init)
        session_id = response.headers.get("mcp-session-id")
        if session_id:
            self.headers["mcp-session-id"] = session_id
        self.headers["mcp-protocol-version"] = "2025-11-25"
        await self.http.post(
            self.url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=self.headers,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(httpx2.HTTPError):
            await self.http.delete(self.url, headers=self.headers)
        await self.http.aclose()

    async def _post(self, method: str, params: dict[str, Any]) -> httpx2.Response:
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        response = await self.http.post(self.url, json=body, headers=self.headers)
        response.raise_for_status()
        return response

    async def request_bytes(self, method: str, params: dict[str, Any]) -> int:
        """One request; the size of the complete response body."""
        response = await self._post(method, params)
        return len(response.content)


async def raw_list_latency(url: str, calls: int, timeout: float) -> tuple[Latency, int]:
    """tools/list through `RawSession`: latencies (ms) and the response size in bytes."""
    samples: list[float] = []
    size = 0
    clock = time.perf_counter
    async with RawSession(url) as raw:
        for _ in range(3):
            await raw.request_bytes("tools/list", {})
        with anyio.fail_after(timeout), INTERFERENCE.window():
            for _ in range(calls):
                start = clock()
                size = await raw.request_bytes("tools/list", {})
                samples.append((clock() - start) * 1000)
    return Latency(samples), size
