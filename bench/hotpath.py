"""Profile the router's hot path: tools/call over HTTP (1b) or stdio (1a), tools/list (5).

``uv run --with pyinstrument python -m bench.hotpath [--scenario call|stdio|list] [--calls N]
[--clock wall|cpu] [--src DIR]``

Starts the backends and the router (``bench/hotpath_target.py``) in front of them, warms up,
then runs ``--calls`` sequential operations three times: with no profiler (the router's CPU and
garbage-collector time per operation), with pyinstrument (statistical sampling, little
distortion: the time split) and with cProfile (deterministic: call counts, and the cost of
each of our functions). Start-up is not profiled.

Writes bench/PROFILE.md (call), bench/PROFILE-stdio.md or bench/PROFILE-list.md, and the raw
reports under bench/profile/<scenario>/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import shutil
import signal
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp.client.stdio import StdioServerParameters, stdio_client

from bench import measure, procs
from bench.procs import (
    BENCH,
    PYTHON,
    ROOT,
    find_child,
    free_port,
    kill_group,
    start,
    sweep,
    vm_hwm_mb,
    wait_http,
)
from bench.run import (
    DEMO,
    ECHO_ARGS,
    TOOLSERVER,
    http_url,
    source_info,
    stdio_backend,
    wait_router_ready,
    write_config,
)

# Categories, first match wins: (label, substrings of a file path or builtin's name).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("idle: event loop waiting for I/O (epoll)", ("epoll", "select.poll", "selectors.py")),
    ("mcp-router (ours)", ("mcp_router", "bench/hotpath_target")),
    ("FastMCP server (dispatch, middleware, tool run)", ("/fastmcp/",)),
    ("SDK server (mcp.server: streamable HTTP, session, runner)", ("/mcp/server/",)),
    ("SDK client (mcp.client, mcp.shared: session, dispatcher)", ("/mcp/client/", "/mcp/shared/")),
    ("pydantic / mcp_types (validation, serialization)", ("pydantic", "mcp_types", "/mcp/types")),
    ("uvicorn / h11 (HTTP server)", ("uvicorn", "/h11/", "httptools")),
    ("starlette / sse-starlette (ASGI)", ("starlette",)),
    ("httpx2 / httpcore2 (HTTP client to the backend)", ("httpx2", "httpcore2", "/h2/")),
    ("json (stdlib)", ("/json/", "json.")),
    ("event loop machinery (asyncio, anyio)", ("asyncio", "anyio", "sniffio", "contextvars")),
    ("logging", ("/logging/",)),
    ("prometheus_client", ("prometheus_client",)),
    ("tenacity", ("tenacity",)),
    ("opentelemetry", ("opentelemetry",)),
    ("sockets / syscalls", ("socket", "'send", "'recv", "ssl")),
    (
        "uuid / typing / other stdlib",
        (
            "/uuid.py",
            "/typing.py",
            "/enum.py",
            "/weakref",
            "/abc.py",
            "/functools.py",
            "/dataclasses.py",
            "/copy.py",
            "/re/",
        ),
    ),
]
OTHER = "other"


def categorize(where: str) -> str:
    for label, needles in CATEGORIES:
        if any(n in where for n in needles):
            return label
    return OTHER


# ---------------------------------------------------------------------------------- driver


async def one_op(client: Any, scenario: str) -> None:
    """The profiled operation: one routed tools/call, or one full tools/list."""
    if scenario in ("call", "stdio"):
        await measure.call_ok(client, "demo_echo", ECHO_ARGS)
    else:
        await measure.list_all_tools(client)


async def drive(
    connect: Callable[[], Any],
    scenario: str,
    calls: int,
    warmup: int,
    out: Path,
    profile: bool = True,
) -> float | None:
    """Warm up, then profile ``calls`` sequential operations with each profiler in turn.

    ``connect()`` is an async context manager yielding (client, router pid). Returns the
    router's VmHWM at the end.
    """
    async with connect() as (client, pid):
        for _ in range(warmup):
            await one_op(client, scenario)
        phases = (
            (signal.SIGWINCH, "gc.done"),
            (signal.SIGUSR1, "pyinstrument.done"),
            (signal.SIGUSR2, "cprofile.done"),
        )
        for sig, done in phases if profile else phases[:1]:
            os.kill(pid, sig)
            await anyio.sleep(0.2)
            samples: list[float] = []
            with anyio.fail_after(300):
                for _ in range(calls):
                    t0 = time.perf_counter()
                    await one_op(client, scenario)
                    samples.append((time.perf_counter() - t0) * 1000)
            os.kill(pid, sig)
            with anyio.fail_after(60):
                while not (out / done).exists():  # noqa: ASYNC110 - another process writes it
                    await anyio.sleep(0.1)
            print(
                f"  {done.split('.')[0]}: {calls} x {scenario}, p50 "
                f"{measure.percentile(samples, 50):.2f} ms, p99 "
                f"{measure.percentile(samples, 99):.2f} ms, max {max(samples):.1f} ms, "
                f"{sum(samples) / 1000:.1f} s",
                flush=True,
            )
        return vm_hwm_mb(pid)


# ---------------------------------------------------------------------------------- analysis


def pyinstrument_split(
    path: Path, calls: int
) -> tuple[dict[str, float], float, list[tuple[str, float]]]:
    """Self time per category (ms per call), the session's duration, and top self-time frames."""
    from pyinstrument.session import Session

    session = Session.load(str(path))
    root = session.root_frame(trim_stem=False)
    by_cat: dict[str, float] = defaultdict(float)
    by_frame: dict[str, float] = defaultdict(float)
    stack = [root] if root is not None else []
    while stack:
        frame = stack.pop()
        children = list(frame.children)
        stack.extend(children)
        self_time = frame.time - sum(c.time for c in children)
        if self_time <= 0:
            continue
        owner = frame
        while owner.file_path is None and owner.parent is not None:
            owner = owner.parent  # "[self]" leaves: the time belongs to the frame above
        where = f"{owner.file_path or ''}:{owner.function}"
        by_cat[categorize(where)] += self_time
        by_frame[f"{owner.function} ({_short(owner.file_path or '')}:{owner.line_no})"] += self_time
    per_call = {k: v / calls * 1000 for k, v in by_cat.items()}
    top = sorted(((k, v / calls * 1000) for k, v in by_frame.items()), key=lambda kv: -kv[1])
    return per_call, session.duration, top[:25]


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _where(func: tuple[str, int, str]) -> str:
    filename, _line, name = func
    return f"{filename}:{name}" if filename != "~" else name


def cprofile_split(path: Path, calls: int) -> tuple[dict[str, float], list[str], list[str]]:
    """tottime per category (ms per call), top functions by tottime, our functions by cumtime."""
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_cat: dict[str, float] = defaultdict(float)
    rows = []
    for func, (cc, nc, tt, ct, _callers) in raw.items():
        by_cat[categorize(_where(func))] += tt
        rows.append((func, cc, nc, tt, ct))
    per_call = {k: v / calls * 1000 for k, v in by_cat.items()}

    def fmt(func: tuple[str, int, str], nc: int, tt: float, ct: float) -> str:
        filename, line, name = func
        loc = f"{_short(filename)}:{line}" if filename != "~" else "builtin"
        return (
            f"| `{name}` | {loc} | {nc / calls:.1f} | {tt / calls * 1e6:.0f} "
            f"| {ct / calls * 1e6:.0f} |"
        )

    top_tt = [fmt(f, nc, tt, ct) for f, _cc, nc, tt, ct in sorted(rows, key=lambda r: -r[3])[:30]]
    ours = [r for r in rows if "mcp_router" in r[0][0]]
    top_ours = [fmt(f, nc, tt, ct) for f, _cc, nc, tt, ct in sorted(ours, key=lambda r: -r[4])[:25]]
    return per_call, top_tt, top_ours


def split_table(per_call: dict[str, float], title: str) -> list[str]:
    busy = {k: v for k, v in per_call.items() if not k.startswith("idle")}
    total = sum(busy.values())
    lines = [f"| {title} | ms per call | share of busy time |", "|---|---:|---:|"]
    for label, value in sorted(busy.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {label} | {value:.3f} | {value / total * 100:.0f}% |")
    lines.append(f"| **total busy (excluding idle)** | **{total:.3f}** | |")
    idle = sum(v for k, v in per_call.items() if k.startswith("idle"))
    lines.append(f"| idle (waiting for the backend / client) | {idle:.3f} | |")
    return lines


DONE_FILES = ("gc.done", "pyinstrument.done", "cprofile.done")

CLOCKS = {
    "wall": "wall clock: time blocked in epoll shows as idle; use on an idle machine",
    "cpu": "the thread's CPU clock: blocked or preempted time counts nowhere, robust on a busy "
    "machine, but the timer's own cost inflates every figure by several times: read shares, "
    "not absolute values",
}

SCENARIOS = {
    "call": "run 1b: HTTP front -> streamable HTTP backend, sequential `tools/call demo_echo`",
    "stdio": "run 1a: stdio front (router launched by the client) -> stdio backend, sequential "
    "`tools/call demo_echo`",
    "list": "run 5: HTTP front, 4 HTTP backends x 500 tools, sequential full `tools/list` "
    "(2,003 tools)",
}


def report(out: Path, session: Path, scenario: str, calls: int, clock: str, lat_note: str) -> str:
    pi_split, pi_duration, pi_top = pyinstrument_split(session, calls)
    cp_split, cp_top, cp_ours = cprofile_split(out / "cprofile.pstats", calls)
    gc_info = json.loads((out / "gc.json").read_text())
    gc_rows = [
        f"| {gen} | {v['count'] / calls:.3f} | {v['seconds'] / calls * 1000:.3f} "
        f"| {v['seconds'] / max(v['count'], 1) * 1000:.2f} |"
        for gen, v in sorted(gc_info["collections"].items())
    ]
    gc_total = sum(v["seconds"] for v in gc_info["collections"].values()) / calls * 1000
    cpu_per_op = gc_info["cpu_seconds"] / calls * 1000
    lines = [
        f"# Router hot path profile ({SCENARIOS[scenario]})",
        "",
        f"- {calls} operations per profiler after warm-up, figures per operation; router code: "
        f"{source_info()}; command: `uv run --with pyinstrument python -m bench.hotpath "
        f"--scenario {scenario} --calls {calls} --clock {clock}`",
        f"- {lat_note}",
        f"- pyinstrument samples the router's main thread every 0.5 ms ({CLOCKS[clock]}); its "
        "split is the trustworthy one. cProfile (wall clock) traces every call and inflates "
        "cheap Python functions, but gives exact call counts.",
        f"- raw reports: {out.relative_to(BENCH.parent)}/pyinstrument.txt (call tree), "
        f"{out.relative_to(BENCH.parent)}/cprofile.pstats (`python -m pstats`)",
        "",
        "## Without a profiler: CPU and garbage collection",
        "",
        f"A first window of {calls} operations runs with no profiler: the router process used "
        f"**{cpu_per_op:.3f} ms of CPU per operation** (process time, all threads), of which "
        f"**{gc_total:.3f} ms in the cyclic garbage collector** (`gc.callbacks`; thresholds "
        f"{tuple(gc_info['thresholds'])}, {gc_info['objects']} tracked objects at the end).",
        "",
        "| generation | collections per operation | GC ms per operation | ms per collection |",
        "|---|---:|---:|---:|",
        *gc_rows,
        "",
        "The profilers below add their own overhead: compare shares, and use the figure "
        "above for the absolute cost.",
        "",
        "## Where the time goes (pyinstrument, self time by library)",
        "",
        *split_table(pi_split, "library"),
        "",
        f"(profiled window {pi_duration:.1f} s)",
        "",
        "## Top frames by self time (pyinstrument, ms per call)",
        "",
        "| frame | ms per call |",
        "|---|---:|",
        *[f"| `{k}` | {v:.3f} |" for k, v in pi_top],
        "",
        "## Same split under cProfile (tottime by library)",
        "",
        *split_table(cp_split, "library"),
        "",
        "## Top functions by own time (cProfile; per routed call)",
        "",
        "| function | where | calls | own µs | cumulative µs |",
        "|---|---|---:|---:|---:|",
        *cp_top,
        "",
        "## mcp-router functions by cumulative time (cProfile; per routed call)",
        "",
        "Coroutine cumulative time counts only the slices in which it runs (not its awaits).",
        "",
        "| function | where | calls | own µs | cumulative µs |",
        "|---|---|---:|---:|---:|",
        *cp_ours,
        "",
    ]
    return "\n".join(lines)


def start_backends(scenario: str, tmp: Path) -> tuple[list[Any], Path]:
    """The backends of a scenario (started, not yet ready) and the router config for them."""
    if scenario == "stdio":
        return [], write_config(tmp / "hotpath-stdio.yaml", [stdio_backend("demo", DEMO)])
    if scenario == "call":
        port = free_port()
        backends = [start([PYTHON, *DEMO, "--transport", "http", "--port", str(port)])]
        entries = [{"name": "demo", "url": http_url(port)}]
    else:
        ports = [free_port() for _ in range(4)]
        backends = [
            start([PYTHON, TOOLSERVER, "--tools", "500", "--transport", "http", "--port", str(p)])
            for p in ports
        ]
        entries = [{"name": f"b{i}", "url": http_url(p)} for i, p in enumerate(ports)]
    for proc, entry in zip(backends, entries, strict=True):
        wait_http(entry["url"], 90, proc)
    return backends, write_config(tmp / f"hotpath-{scenario}.yaml", entries)


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="call")
    parser.add_argument(
        "--calls", type=int, help="operations per window (default 2000; 30 for list)"
    )
    parser.add_argument(
        "--warmup", type=int, help="operations before measuring (default 200; 5 for list)"
    )
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--src", type=Path, help="profile the router from this source dir")
    parser.add_argument(
        "--gc-only",
        action="store_true",
        help="only the unprofiled window (CPU and GC per operation); writes no report",
    )
    parser.add_argument(
        "--gc-threshold",
        default="",
        metavar="A,B,C",
        help="experiment: gc.set_threshold(A, B, C) in the router before the measured windows",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="experiment: gc.collect() + gc.freeze() in the router before the measured windows",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        raise SystemExit("run with: uv run --with pyinstrument python -m bench.hotpath") from None
    if args.src is not None:
        procs.SRC_OVERRIDE.append(str(args.src.resolve()))
    calls = args.calls or (30 if args.scenario == "list" else 2000)
    warmup = args.warmup if args.warmup is not None else (5 if args.scenario == "list" else 200)
    out = BENCH / "profile" / args.scenario
    out.mkdir(parents=True, exist_ok=True)
    for name in DONE_FILES:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    tmp = Path(f"/tmp/mcp-router-bench-{procs.RUN_ID}")
    tmp.mkdir(parents=True, exist_ok=True)
    rport = free_port()
    backends: list[Any] = []
    target = None
    try:
        backends, config = start_backends(args.scenario, tmp)
        log = (tmp / "router.log").open("wb")
        env = procs.child_env(
            BENCH_PROFILE_CLOCK=args.clock,
            BENCH_GC_FREEZE="1" if args.gc_freeze else "0",
            BENCH_GC_THRESHOLD=args.gc_threshold,
        )
        cmd = [str(BENCH / "hotpath_target.py"), str(out), str(tmp), "--", "--config", str(config)]
        connect: Callable[[], Any]
        if args.scenario == "stdio":
            params = StdioServerParameters(command=PYTHON, args=cmd, env=env, cwd=str(ROOT))

            @asynccontextmanager
            async def connect() -> AsyncIterator[tuple[Any, int]]:
                with open(os.devnull, "w") as devnull:  # noqa: ASYNC230 - before any I/O
                    async with measure.client_for(stdio_client(params, errlog=devnull)) as c:
                        yield c, find_child(os.getpid(), "hotpath_target.py")

        else:
            cmd += ["--transport", "http", "--port", str(rport)]
            target = start([PYTHON, *cmd], stderr=log, env=env)
            wait_router_ready(rport, target)

            @asynccontextmanager
            async def connect() -> AsyncIterator[tuple[Any, int]]:
                assert target is not None
                async with measure.client_for(http_url(rport)) as c:
                    yield c, target.pid

        print(f"profiling {calls} x {args.scenario} per profiler ...", flush=True)
        try:
            rss = anyio.run(drive, connect, args.scenario, calls, warmup, out, not args.gc_only)
        except BaseException:
            log.close()
            tail = (tmp / "router.log").read_text(errors="replace")[-3000:]
            print(f"router log (tail):\n{tail}", file=sys.stderr)
            raise
    finally:
        if target is not None:
            kill_group(target)
        for proc in backends:
            kill_group(proc)
        sweep()
    for name in DONE_FILES:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    try:
        if args.gc_only:
            print((out / "gc.json").read_text())
            return
        text = report(
            out,
            tmp / "pyinstrument.session",
            args.scenario,
            calls,
            args.clock,
            f"router VmHWM after profiling (profilers included): {rss or 0:.0f} MiB",
        )
    finally:
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    name = "PROFILE.md" if args.scenario == "call" else f"PROFILE-{args.scenario}.md"
    (BENCH / name).write_text(text)
    print(text)
    print(f"written to {BENCH / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
