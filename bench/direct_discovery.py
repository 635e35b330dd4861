"""Baseline for the start-up benchmark: connect to every backend directly, no router.

``python bench/direct_discovery.py BACKENDS.json``

BACKENDS.json is a list of ``{"name", "command", "args", "env"}`` (stdio) or ``{"name", "url"}``
(streamable HTTP) objects. The script opens one SDK ``Client`` (mode legacy) per backend, all
concurrently, lists each one's tools, then prints ``ready <backends> <tools>`` on stdout and
keeps the sessions open until stdin closes or a line arrives on it. The time from process start
to that line is the least any Python process built on the SDK needs to reach the same backends.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters


async def _hold(
    spec: dict[str, Any], counts: list[int], done: anyio.Event, stop: anyio.Event
) -> None:
    target: Any
    if "url" in spec:
        target = spec["url"]
    else:
        target = StdioServerParameters(
            command=spec["command"], args=list(spec.get("args", [])), env=spec.get("env")
        )
    async with Client(target, mode="legacy", cache=None) as client:
        result = await client.list_tools()
        tools = list(result.tools)
        while result.next_cursor:
            result = await client.list_tools(cursor=result.next_cursor)
            tools.extend(result.tools)
        counts.append(len(tools))
        if len(counts) == counts[0] + 1:  # counts[0] holds the number of backends
            done.set()
        await stop.wait()


async def main(specs: list[dict[str, Any]]) -> None:
    """Connect, report, hold until told to stop."""
    counts: list[int] = [len(specs)]
    done, stop = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        for spec in specs:
            tg.start_soon(_hold, spec, counts, done, stop)
        with anyio.fail_after(60):
            await done.wait()
        print(f"ready {len(counts) - 1} {sum(counts[1:])}", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        stop.set()


if __name__ == "__main__":
    anyio.run(main, json.loads(Path(sys.argv[1]).read_text()))
