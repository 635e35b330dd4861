"""What sharing state in Redis costs: ``tools/call`` through one router with the state in the
process vs the same router with ``MCP_STATE_URL`` set, in the same run, same backend.

Both routers serve the demo backend (one process, streamable HTTP) and are measured
alternately, with the legacy (handshake-era) client, whose sessions are the ones shared: with
a state URL every request also refreshes the session record in Redis (one GETEX), and
initialize writes it. Sequential p50 and 8-session throughput.

``uv run python -m bench.shared_state`` prints a markdown table; ``measure_shared_state()``
returns the figures for ``bench/run.py`` to add to its report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import yaml

from bench import measure
from bench.measure import median
from bench.procs import PYTHON, child_env, spawn
from bench.run import DEMO, ECHO_ARGS, http_url, wait_router_ready

REDIS_SERVER = shutil.which("redis-server")
STATE_KEY = "bench-shared-state-key-0123456789abcdef"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SharedStateFigures:
    """Per mode ("in process", "redis"): sequential p50 (ms) and 8-session calls/s."""

    p50_ms: dict[str, list[float]] = field(default_factory=dict)
    calls_per_second: dict[str, list[float]] = field(default_factory=dict)

    def table(self) -> str:
        """A markdown table: median over repeats, Redis / in-process ratio."""
        rows = [
            "| figure | in process | state in Redis | Redis ÷ in process |",
            "|---|---|---|---|",
        ]
        for label, values in (
            ("tools/call p50 (ms)", self.p50_ms),
            ("8 sessions, calls/s", self.calls_per_second),
        ):
            a, b = median(values["in process"]), median(values["redis"])
            rows.append(f"| {label} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
        return "\n".join(rows)


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    assert REDIS_SERVER, "redis-server is not installed"
    port = _free_port()
    cmd = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    with spawn([*cmd, "--appendonly", "no"]):
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def _router(config: Path, state_url: str | None) -> Iterator[str]:
    port = _free_port()
    env = child_env(MCP_STATE_KEY=STATE_KEY, MCP_REPLICA_ID=f"bench-{port}")
    if state_url is not None:
        env["MCP_STATE_URL"] = state_url
    cmd = [PYTHON, "-m", "mcp_router.cli", "--config", str(config), "--transport", "http"]
    with spawn([*cmd, "--port", str(port)], env=env) as proc:
        wait_router_ready(port, proc)
        yield http_url(port)


async def _measure_one(url: str, calls: int, seconds: float) -> tuple[float, float]:
    async with measure.sessions(url, 1) as (one,):
        await measure.warm_up([one], "demo_echo", ECHO_ARGS, 30)
        latency = await measure.sequential(one, "demo_echo", ECHO_ARGS, calls, 120)
    async with measure.sessions(url, 8) as pool:
        await measure.warm_up(pool, "demo_echo", ECHO_ARGS, 3)
        done = await measure.throughput(pool, "demo_echo", ECHO_ARGS, seconds)
    return latency.p50, done.rate


async def measure_shared_state(
    workdir: Path, *, repeats: int = 3, calls: int = 300, seconds: float = 2.0
) -> SharedStateFigures:
    """Start the demo backend, Redis and two routers (in process / Redis); measure both."""
    figures = SharedStateFigures()
    bport = _free_port()
    backend_cmd = [PYTHON, *DEMO, "--transport", "http", "--port", str(bport)]
    config = workdir / "shared-state.yaml"
    config.write_text(yaml.safe_dump({"backends": [{"name": "demo", "url": http_url(bport)}]}))
    with (
        spawn(backend_cmd, ready_url=http_url(bport), timeout=60),
        _redis() as state_url,
        _router(config, None) as local_url,
        _router(config, state_url) as redis_url,
    ):
        for _ in range(repeats):
            for mode, url in (("in process", local_url), ("redis", redis_url)):
                p50, rate = await _measure_one(url, calls, seconds)
                figures.p50_ms.setdefault(mode, []).append(p50)
                figures.calls_per_second.setdefault(mode, []).append(rate)
    return figures


def section(report: Any, tmp: Path) -> None:
    """`make bench` section 8: the same figures as rows ("direct" = state in process)."""
    from bench.run import Row  # bench.run is imported first by `python -m bench`

    figures = asyncio.run(measure_shared_state(tmp))
    for figure, unit, values in (
        ("tools/call p50, state in Redis vs in process", "ms", figures.p50_ms),
        (
            "8 sessions throughput, state in Redis vs in process",
            "calls/s",
            figures.calls_per_second,
        ),
    ):
        local, shared = median(values["in process"]), median(values["redis"])
        report.add(
            Row(
                "8",
                figure,
                unit,
                local,
                shared,
                shared / local if local else None,
                note="direct = state in process",
            )
        )


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.shared_state [--quick]``: print the table and per-repeat values."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, 100 calls, 1 s")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {"repeats": 1, "calls": 100, "seconds": 1.0} if args.quick else {}
    with TemporaryDirectory() as tmp:
        figures = asyncio.run(measure_shared_state(Path(tmp), **options))
    print(figures.table())
    print(
        f"\nper repeat: p50 {figures.p50_ms}, calls/s {figures.calls_per_second}", file=sys.stderr
    )


if __name__ == "__main__":
    main()
