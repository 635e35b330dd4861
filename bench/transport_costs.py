"""Where the streamable-HTTP cost of one tools/call goes, client side and server side.

``uv run python -m bench.transport_costs``

The router is an HTTP server (its front) and an HTTP client (to each backend) at once, so each
side's per-call cost is paid once more per routed call. This measures, against a FastMCP
server with one echo tool (``bench/toolserver.py``):

- client: the SDK ``Client`` as is; the same with an httpx2 transport that drains a response
  before closing it (``DrainingTransport``: the SDK closes the SSE response as soon as it has
  the JSON-RPC answer, before the end of the chunked body, so httpcore drops the connection and
  every call opens a new TCP connection); a hand-rolled session (httpx2 POST, body read whole,
  no SDK: the floor for a Python HTTP client);
- server: answering with an SSE stream (the default) or a JSON body (``json_response=True``).

Figures per call: latency p50, CPU of the client (this process) and of the server, and new
TCP connections (TIME-WAIT sockets on the server's port, from ``ss``). Writes
bench/TRANSPORT.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
from mcp.client.streamable_http import streamable_http_client

from bench import measure
from bench.measure import RawSession, median
from bench.procs import (
    BENCH,
    INTERFERENCE,
    PYTHON,
    cpu_seconds,
    free_port,
    kill_group,
    start,
    sweep,
    wait_http,
)
from bench.run import TOOLSERVER, http_url

ARGS = {"text": "hello"}


class _DrainOnClose(httpx2.AsyncByteStream):
    """A response body that, when closed early, first reads what is left (briefly)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._ended = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk
        self._ended = True

    async def aclose(self) -> None:
        # The SSE stream of a POST ends right after the answer: the terminating chunk is
        # usually already there. Reading it lets httpcore keep the connection.
        if not self._ended:
            try:
                with anyio.move_on_after(0.05):
                    async for _ in self._inner:
                        pass
            except httpx2.HTTPError:
                pass
        await self._inner.aclose()


class DrainingTransport(httpx2.AsyncBaseTransport):
    """httpx2 transport whose responses are drained before close, so connections are reused."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        response.stream = _DrainOnClose(response.stream)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def time_wait(port: int) -> int:
    """TIME-WAIT sockets involving ``port`` (one per closed connection, for ~60 s)."""
    out = subprocess.run(["ss", "-tan"], capture_output=True, text=True, check=False).stdout
    return sum(1 for line in out.splitlines() if "TIME-WAIT" in line and f":{port} " in line)


Caller = Callable[[], Any]


@asynccontextmanager
async def client(kind: str, url: str) -> AsyncIterator[Caller]:
    """A zero-argument coroutine function making one tools/call with the given client kind."""
    if kind == "raw httpx2 session":
        async with RawSession(url) as raw:
            yield lambda: raw.request_bytes("tools/call", {"name": "tool_0", "arguments": ARGS})
        return
    http = httpx2.AsyncClient(
        timeout=httpx2.Timeout(30.0, read=300.0),
        transport=DrainingTransport() if kind == "SDK Client + draining transport" else None,
    )
    async with http, measure.client_for(streamable_http_client(url, http_client=http)) as c:
        yield lambda: measure.call_ok(c, "tool_0", ARGS)


async def measure_one(
    kind: str, url: str, port: int, server_pid: int, calls: int, repeats: int
) -> dict[str, float]:
    p50: list[float] = []
    client_cpu: list[float] = []
    server_cpu: list[float] = []
    conns: list[float] = []
    async with client(kind, url) as call:
        for _ in range(30):
            await call()
        for _ in range(repeats):
            tw0, c0, s0 = time_wait(port), time.process_time(), cpu_seconds(server_pid)
            samples: list[float] = []
            with anyio.fail_after(120), INTERFERENCE.window():
                for _ in range(calls):
                    t0 = time.perf_counter()
                    await call()
                    samples.append((time.perf_counter() - t0) * 1000)
            client_cpu.append((time.process_time() - c0) / calls * 1000)
            server_cpu.append((cpu_seconds(server_pid) - s0) / calls * 1000)
            conns.append((time_wait(port) - tw0) / calls)
            p50.append(measure.percentile(samples, 50))
    return {
        "p50": median(p50),
        "client": median(client_cpu),
        "server": median(server_cpu),
        "conns": median(conns),
    }


async def run(calls: int, repeats: int) -> list[str]:
    kinds = ["SDK Client", "SDK Client + draining transport", "raw httpx2 session"]
    rows: list[str] = []
    for server_kind, extra in (
        ("SSE (default)", []),
        ("JSON (json_response=True)", ["--json-response"]),
    ):
        port = free_port()
        proc = start(
            [PYTHON, TOOLSERVER, "--tools", "1", "--transport", "http", "--port", str(port), *extra]
        )
        try:
            wait_http(http_url(port), 60, proc)
            for kind in kinds:
                r = await measure_one(kind, http_url(port), port, proc.pid, calls, repeats)
                rows.append(
                    f"| {server_kind} | {kind} | {r['p50']:.2f} | {r['client']:.2f} "
                    f"| {r['server']:.2f} | {r['conns']:.2f} |"
                )
                print(rows[-1], flush=True)
        finally:
            kill_group(proc)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transport_costs", description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if shutil.which("ss") is None:
        raise SystemExit("needs `ss` (iproute2) to count connections")
    try:
        rows = anyio.run(run, args.calls, args.repeats)
    finally:
        sweep()
    shares = INTERFERENCE.shares
    noise = f"{median(shares) * 100:.0f}% / {max(shares) * 100:.0f}%" if shares else "-"
    text = "\n".join(
        [
            "# Streamable HTTP cost per tools/call, by client and server response mode",
            "",
            f"`uv run python -m bench.transport_costs` ({args.calls} sequential calls x "
            f"{args.repeats} repeats, medians; CPU from /proc, 10 ms ticks; other processes "
            f"used {noise} (median / max) of the machine during the windows). Server: FastMCP "
            "(`bench/toolserver.py --tools 1`), tool `tool_0` (echo).",
            "",
            "| server answers with | client | p50 ms | client CPU ms/call | server CPU ms/call "
            "| new TCP connections per call |",
            "|---|---|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    (BENCH / "TRANSPORT.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
