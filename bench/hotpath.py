"""Profile the router's hot path (run 1b: HTTP front -> streamable HTTP backend, tools/call).

``uv run --with pyinstrument python -m bench.hotpath [--calls N] [--src DIR]``

Starts the demo server over HTTP and the router (``bench/hotpath_target.py``) in front of it,
warms up, then profiles ``--calls`` sequential ``tools/call echo`` twice: once with pyinstrument
(statistical sampling, little distortion: the time split) and once with cProfile
(deterministic: call counts, and the cost of each of our functions). Start-up is not profiled.

Writes bench/PROFILE.md (the per-call breakdown) and the raw reports under bench/profile/.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio

from bench import measure, procs
from bench.procs import BENCH, PYTHON, free_port, kill_group, start, sweep, vm_hwm_mb, wait_http
from bench.run import DEMO, ECHO_ARGS, http_url, source_info, wait_router_ready, write_config

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


async def drive(router_url: str, target: Any, calls: int, warmup: int, out: Path) -> None:
    """Warm up, then profile ``calls`` sequential calls with each profiler in turn."""
    async with measure.client_for(router_url) as client:
        for _ in range(warmup):
            await measure.call_ok(client, "demo_echo", ECHO_ARGS)
        for sig, done in ((signal.SIGUSR1, "pyinstrument.done"), (signal.SIGUSR2, "cprofile.done")):
            os.kill(target.pid, sig)
            await anyio.sleep(0.2)
            t0 = time.perf_counter()
            lat = await measure.sequential(client, "demo_echo", ECHO_ARGS, calls, 300)
            wall = time.perf_counter() - t0
            os.kill(target.pid, sig)
            with anyio.fail_after(60):
                while not (out / done).exists():  # noqa: ASYNC110 - another process writes it
                    await anyio.sleep(0.1)
            print(
                f"  {done.split('.')[0]}: {calls} calls, p50 {lat.p50:.2f} ms, {wall:.1f} s",
                flush=True,
            )


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


def report(out: Path, session: Path, calls: int, lat_note: str) -> str:
    pi_split, pi_duration, pi_top = pyinstrument_split(session, calls)
    cp_split, cp_top, cp_ours = cprofile_split(out / "cprofile.pstats", calls)
    lines = [
        "# Router hot path profile (run 1b: HTTP front -> streamable HTTP backend, tools/call)",
        "",
        f"- {calls} sequential `tools/call demo_echo` per profiler after warm-up; router code: "
        f"{source_info()}",
        f"- {lat_note}",
        "- pyinstrument samples the router's main thread every 0.5 ms of its CPU time (so time "
        "blocked in epoll, or preempted by other processes, counts nowhere); its split is the "
        "trustworthy one. cProfile (wall clock) traces every call and inflates cheap Python "
        "functions, but gives exact call counts.",
        "- raw reports: bench/profile/pyinstrument.txt (call tree), bench/profile/cprofile.pstats "
        "(`python -m pstats`)",
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


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--src", type=Path, help="profile the router from this source dir")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        raise SystemExit("run with: uv run --with pyinstrument python -m bench.hotpath") from None
    if args.src is not None:
        procs.SRC_OVERRIDE.append(str(args.src.resolve()))
    out = BENCH / "profile"
    out.mkdir(exist_ok=True)
    for name in ("pyinstrument.done", "cprofile.done"):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    tmp = Path(f"/tmp/mcp-router-bench-{procs.RUN_ID}")
    tmp.mkdir(parents=True, exist_ok=True)
    bport, rport = free_port(), free_port()
    config = write_config(tmp / "hotpath.yaml", [{"name": "demo", "url": http_url(bport)}])
    backend = start([PYTHON, *DEMO, "--transport", "http", "--port", str(bport)])
    target = None
    try:
        wait_http(http_url(bport), 60, backend)
        log = (tmp / "router.log").open("wb")
        target = start(
            stderr=log,
            cmd=[
                PYTHON,
                str(BENCH / "hotpath_target.py"),
                str(out),
                str(tmp),
                "--",
                "--config",
                str(config),
                "--transport",
                "http",
                "--port",
                str(rport),
            ],
        )
        wait_router_ready(rport, target)
        print(f"profiling {args.calls} calls per profiler ...", flush=True)
        try:
            anyio.run(drive, http_url(rport), target, args.calls, args.warmup, out)
        except BaseException:
            log.close()
            tail = (tmp / "router.log").read_text(errors="replace")[-3000:]
            print(f"router log (tail):\n{tail}", file=sys.stderr)
            raise
        rss = vm_hwm_mb(target.pid)
    finally:
        if target is not None:
            kill_group(target)
        kill_group(backend)
        sweep()
    for name in ("pyinstrument.done", "cprofile.done"):
        (out / name).unlink()
    text = report(
        out,
        tmp / "pyinstrument.session",
        args.calls,
        f"router VmHWM after profiling: {rss or 0:.0f} MiB",
    )
    (BENCH / "PROFILE.md").write_text(text)
    print(text)
    print(f"written to {BENCH / 'PROFILE.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
