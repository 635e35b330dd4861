"""mcp-router benchmark suite: one bounded run, every figure against a direct connection.

``uv run python -m bench [--quick] [--only 1,2,...] [--repeats N] [--out PATH]``

Sections (see bench/README.md for what each figure means):

1. sequential tools/call latency, (a) stdio -> stdio, (b) HTTP -> streamable HTTP, (c) the
   same with the 2026-07-28 era (client mode auto);
2. throughput with 1, 8 and 32 concurrent HTTP sessions;
3. FastMCP's own proxy (``create_proxy(url)``) beside the router: latency and 8-session rate;
4. time from process start to ``/ready`` with 20 backends (10 stdio + 10 HTTP, 50 tools each);
5. tools/list of 2,000 aggregated tools;
6. peak RSS (VmHWM) of the router process in runs 1a, 2 and 4;
7. HTTP front -> stdio backend beside the single-server bridges (supergateway, mcp-proxy);
then every figure of `EXTRA_SECTIONS` (the hook for figures defined in other modules).

Each figure is the median of ``--repeats`` (>= 3) repeats; direct and router runs alternate
inside one repeat so that both see the same machine state.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO, TypeVar

import anyio
import httpx2
import yaml
from mcp.client.stdio import StdioServerParameters, stdio_client

from bench import measure, peers, procs
from bench.measure import Latency, Throughput, median
from bench.procs import (
    BENCH,
    INTERFERENCE,
    MARKER,
    PYTHON,
    ROOT,
    RUN_ID,
    child_env,
    children_of,
    cpu_seconds,
    find_child,
    free_port,
    kill_group,
    start,
    sweep,
    vm_hwm_mb,
    wait_http,
)

TOOLSERVER = str(BENCH / "toolserver.py")
FASTMCP_PROXY = str(BENCH / "fastmcp_proxy.py")
DIRECT_DISCOVERY = str(BENCH / "direct_discovery.py")
DEMO = ["-m", "mcp_router.template", "--log-level", "WARNING"]
ECHO_ARGS = {"text": "hello"}
GLOBAL_LIMIT_S = 720  # hard stop for the whole run (the full run takes about 4-5 minutes idle)

# The hook for figures defined outside this file: (section key, title, function). Each function
# takes the `Report` and the run's temporary directory, adds its rows with `report.add`, and
# runs after the built-in sections when its key is selected (all keys by default; `--only`
# names them like the others). A module adds its figure by appending here, e.g.
# ``EXTRA_SECTIONS.append(("8", "8 shared state", shared_state.section))`` below the imports.
ExtraSection = tuple[str, str, "Callable[[Report, Path], None]"]
EXTRA_SECTIONS: list[ExtraSection] = []


# ---------------------------------------------------------------------------------- settings


@dataclass
class Plan:
    """How much to measure: full (< 5 min) or quick (~1 min)."""

    quick: bool
    repeats: int
    lat_calls: int
    lat_warmup: int
    tp_seconds: float
    tp_levels: tuple[int, ...]
    proxy_calls: int
    list_calls: int
    sections: set[str]

    @classmethod
    def make(cls, quick: bool, repeats: int | None, only: str | None) -> Plan:
        sections = {"1", "2", "3", "4", "5", "7", *(key for key, _, _ in EXTRA_SECTIONS)}
        if only:
            sections = {s.strip() for s in only.split(",") if s.strip()}
        if quick:
            return cls(True, repeats or 3, 100, 20, 1.0, (1, 8, 32), 15, 4, sections)
        return cls(False, repeats or 3, 300, 50, 2.0, (1, 8, 32), 60, 10, sections)


@dataclass
class Row:
    """One line of the results table."""

    section: str
    figure: str
    unit: str
    direct: float | None
    router: float | None
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Report:
    """Everything measured in this run."""

    plan: Plan
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    load_note: str = ""
    kept_shares: list[float] = field(default_factory=list)  # interference of kept windows
    discarded: int = 0  # repeats re-run because of interference
    noisy: int = 0  # repeats kept although noisy (attempts or time budget exhausted)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(
            f"  [{row.section}] {row.figure}: direct={_fmt(row.direct)} router={_fmt(row.router)}"
            f" ratio={_fmt(row.ratio)} {row.unit} {row.note}",
            flush=True,
        )

    def detail(self, line: str) -> None:
        self.details.append(line)


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _rounds(values: list[float]) -> str:
    return ", ".join(_fmt(v) for v in values)


# ---------------------------------------------------------------------------------- noise

CLEAN_SHARE = 0.10  # a repeat is re-run when other processes used more of the machine than this
MAX_ATTEMPTS = 3  # per repeat
RETRY_BUDGET_S = 120.0  # no more re-runs once the run has lasted this long (keeps it < 5 min)

T = TypeVar("T")


def _judge(report: Report, mark: int, attempt: int) -> bool:
    """Keep the repeat just measured (windows from ``mark`` on)? Account for it either way."""
    shares = INTERFERENCE.shares[mark:]
    worst = max(shares, default=0.0)
    last = attempt == MAX_ATTEMPTS - 1 or time.monotonic() - report.started > RETRY_BUDGET_S
    if worst <= CLEAN_SHARE or last:
        report.kept_shares.extend(shares)
        report.noisy += worst > CLEAN_SHARE
        return True
    report.discarded += 1
    print(
        f"    repeat discarded (other processes used {worst:.0%} of the machine); again", flush=True
    )
    return False


async def clean(report: Report, body: Callable[[], Awaitable[T]]) -> T:
    """Run one repeat; run it again (bounded) if other processes disturbed its windows."""
    for attempt in range(MAX_ATTEMPTS):
        mark = len(INTERFERENCE.shares)
        value = await body()
        if _judge(report, mark, attempt):
            return value
    raise AssertionError("unreachable")


def clean_sync(report: Report, body: Callable[[], T]) -> T:
    """`clean` for blocking bodies."""
    for attempt in range(MAX_ATTEMPTS):
        mark = len(INTERFERENCE.shares)
        value = body()
        if _judge(report, mark, attempt):
            return value
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------- processes


def write_config(path: Path, backends: list[dict[str, Any]]) -> Path:
    """A router config (YAML) with the given backends."""
    path.write_text(yaml.safe_dump({"backends": backends}, sort_keys=False))
    return path


def stdio_backend(name: str, args: list[str]) -> dict[str, Any]:
    """A stdio backend entry; the run marker in its env lets `sweep()` find leaks."""
    env = {MARKER: RUN_ID}
    if procs.SRC_OVERRIDE:
        env["PYTHONPATH"] = os.pathsep.join(procs.SRC_OVERRIDE)
    return {"name": name, "command": PYTHON, "args": args, "env": env}


def router_cmd(config: Path, port: int) -> list[str]:
    return [
        PYTHON,
        "-m",
        "mcp_router.cli",
        "--config",
        str(config),
        "--transport",
        "http",
        "--port",
        str(port),
    ]


def stdio_params(args: list[str]) -> StdioServerParameters:
    return StdioServerParameters(command=PYTHON, args=args, env=child_env(), cwd=str(ROOT))


@contextlib.contextmanager
def processes(*cmds: list[str]) -> Iterator[list[subprocess.Popen[Any]]]:
    """Start several processes at once; stop every one of them (and its group) afterwards."""
    procs: list[subprocess.Popen[Any]] = []
    try:
        for cmd in cmds:
            procs.append(start(cmd))
        yield procs
    finally:
        for proc in procs:
            kill_group(proc)


def http_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/mcp"


def wait_router_ready(port: int, proc: subprocess.Popen[Any], timeout: float = 60) -> float:
    return wait_http(f"http://127.0.0.1:{port}/ready", timeout, proc, status=200, interval=0.01)


def ready_body(port: int) -> dict[str, Any]:
    return dict(httpx2.get(f"http://127.0.0.1:{port}/ready", timeout=5).json())


# ---------------------------------------------------------------------------------- 1. latency


async def _latency_pair(
    report: Report,
    section: str,
    label: str,
    direct: Any,
    router: Any,
    pids: dict[str, int],
    target_added: float,
) -> None:
    """Alternate direct and router sequential runs; add p50, p99 and added-latency rows."""
    plan = report.plan
    await measure.warm_up([direct], "echo", ECHO_ARGS, plan.lat_warmup)
    await measure.warm_up([router], "demo_echo", ECHO_ARGS, plan.lat_warmup)
    d_runs: list[Latency] = []
    r_runs: list[Latency] = []
    cpu: dict[str, list[float]] = {k: [] for k in pids}

    async def one() -> tuple[Latency, Latency, dict[str, float]]:
        d = await measure.sequential(direct, "echo", ECHO_ARGS, plan.lat_calls, 120)
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        r = await measure.sequential(router, "demo_echo", ECHO_ARGS, plan.lat_calls, 120)
        used = {k: (cpu_seconds(p) - before[k]) / plan.lat_calls * 1000 for k, p in pids.items()}
        return d, r, used

    for _ in range(plan.repeats):
        d, r, used = await clean(report, one)
        d_runs.append(d)
        r_runs.append(r)
        for k, v in used.items():
            cpu[k].append(v)
    d50, r50 = median([r.p50 for r in d_runs]), median([r.p50 for r in r_runs])
    d99, r99 = median([r.p99 for r in d_runs]), median([r.p99 for r in r_runs])
    added = r50 - d50
    report.add(Row(section, f"{label} tools/call p50", "ms", d50, r50, _ratio(r50, d50)))
    report.add(Row(section, f"{label} tools/call p99", "ms", d99, r99, _ratio(r99, d99)))
    report.add(
        Row(
            section,
            f"{label} router p99 / router p50 (tail)",
            "x",
            None,
            _ratio(r99, r50),
            None,
            "<= 2x",
            r99 <= 2 * r50,
        )
    )
    report.add(
        Row(
            section,
            f"{label} added latency (router p50 - direct p50)",
            "ms",
            None,
            added,
            None,
            f"<= {target_added} ms",
            added <= target_added,
        )
    )
    report.detail(
        f"- {label}: direct p50 per repeat [{_rounds([r.p50 for r in d_runs])}] ms, "
        f"router p50 [{_rounds([r.p50 for r in r_runs])}] ms; "
        f"p99 direct [{_rounds([r.p99 for r in d_runs])}], "
        f"router [{_rounds([r.p99 for r in r_runs])}]; {plan.lat_calls} calls each"
    )
    for k, values in cpu.items():
        report.detail(
            f"  - {label}: CPU of the {k} per routed call: {_fmt(median(values), 3)} ms "
            f"(repeats [{_rounds(values)}])"
        )
    if "router" in cpu:
        report.add(
            Row(
                section,
                f"{label} router process CPU per call",
                "ms",
                None,
                median(cpu["router"]),
                None,
                "",
                None,
                "informational",
            )
        )


async def section_1a(report: Report, tmp: Path, devnull: TextIO) -> None:
    """stdio front -> stdio backend; direct = the demo server launched over stdio.

    The children's stderr goes to ``devnull`` (the SDK's stdio client would print it).
    """
    config = write_config(tmp / "stdio.yaml", [stdio_backend("demo", DEMO)])
    async with AsyncExitStack() as stack:
        direct = await stack.enter_async_context(
            measure.client_for(stdio_client(stdio_params(DEMO), errlog=devnull))
        )
        router_args = ["-m", "mcp_router.cli", "--config", str(config)]
        router = await stack.enter_async_context(
            measure.client_for(stdio_client(stdio_params(router_args), errlog=devnull))
        )
        router_pid = find_child(os.getpid(), "mcp_router.cli")
        backend_pid = find_child(router_pid, "mcp_router.template")
        await _latency_pair(
            report,
            "1a",
            "stdio->stdio",
            direct,
            router,
            {"router": router_pid, "router's backend": backend_pid},
            0.5,
        )
        rss = vm_hwm_mb(router_pid)
        direct_pid = next(
            p for p in _children(os.getpid(), "mcp_router.template") if p != backend_pid
        )
        base = vm_hwm_mb(direct_pid)
        report.add(
            Row(
                "6",
                "peak RSS, router (stdio front, run 1a) vs the demo backend",
                "MiB",
                base,
                rss,
                _ratio(rss, base),
                "<= 150 MiB",
                rss is not None and rss <= 150,
            )
        )


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, their children, ...)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children_of(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def _children(ppid: int, needle: str) -> list[int]:
    """Pids of the children of ``ppid`` whose command line contains ``needle``."""
    out = []
    for pid in children_of(ppid):
        with contextlib.suppress(OSError):
            if needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
    return out


# ---------------------------------------------------------------------------------- HTTP stack


@dataclass
class HttpStack:
    """Demo backend over HTTP, the router in front of it, and FastMCP's proxy in front of it."""

    backend_port: int
    router_port: int
    proxy_port: int
    backend: subprocess.Popen[Any]
    router: subprocess.Popen[Any]
    proxy: subprocess.Popen[Any] | None


@contextlib.contextmanager
def http_stack(tmp: Path, with_proxy: bool) -> Iterator[HttpStack]:
    bport, rport, pport = free_port(), free_port(), free_port()
    config = write_config(tmp / "http.yaml", [{"name": "demo", "url": http_url(bport)}])
    with processes([PYTHON, *DEMO, "--transport", "http", "--port", str(bport)]) as (backend,):
        wait_http(f"http://127.0.0.1:{bport}/mcp", 60, backend)
        cmds = [router_cmd(config, rport)]
        if with_proxy:
            cmds.append([PYTHON, FASTMCP_PROXY, "--url", http_url(bport), "--port", str(pport)])
        with processes(*cmds) as procs:
            wait_router_ready(rport, procs[0])
            if with_proxy:
                wait_http(f"http://127.0.0.1:{pport}/mcp", 60, procs[1])
            yield HttpStack(
                bport, rport, pport, backend, procs[0], procs[1] if with_proxy else None
            )


async def section_1b(report: Report, stack: HttpStack) -> None:
    async with (
        measure.client_for(http_url(stack.backend_port)) as direct,
        measure.client_for(http_url(stack.router_port)) as router,
    ):
        await _latency_pair(
            report,
            "1b",
            "HTTP->HTTP",
            direct,
            router,
            {"router": stack.router.pid, "backend": stack.backend.pid},
            1.0,
        )


async def section_1c(report: Report, stack: HttpStack) -> None:
    """HTTP -> HTTP with the 2026-07-28 era: the client in mode auto (stateless POSTs)."""
    async with (
        measure.client_for(http_url(stack.backend_port), mode="auto") as direct,
        measure.client_for(http_url(stack.router_port), mode="auto") as router,
    ):
        await _latency_pair(
            report,
            "1c",
            "HTTP->HTTP 2026-07-28 (mode auto)",
            direct,
            router,
            {"router": stack.router.pid, "backend": stack.backend.pid},
            1.0,
        )


# ---------------------------------------------------------------------------------- 2/3. rate


async def section_2_3(report: Report, stack: HttpStack, with_proxy: bool) -> None:
    plan = report.plan
    targets: dict[str, tuple[str, str]] = {
        "direct": (http_url(stack.backend_port), "echo"),
        "router": (http_url(stack.router_port), "demo_echo"),
    }
    if with_proxy:
        targets["fastmcp-proxy"] = (http_url(stack.proxy_port), "echo")
    for level in plan.tp_levels:
        names = [n for n in targets if n != "fastmcp-proxy" or level == 8]
        rates: dict[str, list[float]] = {n: [] for n in names}
        cpu: list[float] = []
        async with AsyncExitStack() as ex:
            pools = {
                n: await ex.enter_async_context(measure.sessions(targets[n][0], level))
                for n in names
            }
            for n in names:
                await measure.warm_up(pools[n], targets[n][1], ECHO_ARGS, 3)

            async def one(
                names: list[str] = names, pools: dict[str, Any] = pools
            ) -> tuple[dict[str, float], float | None]:
                got: dict[str, float] = {}
                router_cpu = None
                for n in names:
                    before = cpu_seconds(stack.router.pid)
                    tp: Throughput = await measure.throughput(
                        pools[n], targets[n][1], ECHO_ARGS, plan.tp_seconds
                    )
                    got[n] = tp.rate
                    if n == "router" and tp.calls:
                        router_cpu = (cpu_seconds(stack.router.pid) - before) / tp.calls * 1000
                return got, router_cpu

            for _ in range(plan.repeats):
                got, router_cpu = await clean(report, one)
                for n, rate in got.items():
                    rates[n].append(rate)
                if router_cpu is not None:
                    cpu.append(router_cpu)
        d, r = median(rates["direct"]), median(rates["router"])
        ok = None
        target = ""
        if level == 32:
            ok, target = _ratio(r, d) is not None and r / d >= 0.75, ">= 0.75 of direct"
        report.add(
            Row(
                "2",
                f"throughput, {level} HTTP session(s)",
                "calls/s",
                d,
                r,
                _ratio(r, d),
                target,
                ok,
            )
        )
        if level == 32 and cpu:
            report.add(
                Row(
                    "2",
                    "router process CPU per call, 32 HTTP sessions",
                    "ms",
                    None,
                    median(cpu),
                    None,
                    "",
                    None,
                    "informational",
                )
            )
        report.detail(
            f"- throughput at {level}: "
            + "; ".join(f"{n} [{_rounds(v)}] calls/s" for n, v in rates.items())
            + f"; router CPU per call [{_rounds(cpu)}] ms"
        )
        if "fastmcp-proxy" in rates:
            theirs = median(rates["fastmcp-proxy"])
            report.add(
                Row(
                    "3",
                    "throughput, 8 sessions: mcp-router vs FastMCP proxy "
                    "(direct column = FastMCP proxy)",
                    "calls/s",
                    theirs,
                    r,
                    _ratio(r, theirs),
                    "",
                    None,
                    "ratio = ours / theirs",
                )
            )
    rss = vm_hwm_mb(stack.router.pid)
    base = vm_hwm_mb(stack.backend.pid)
    report.add(
        Row(
            "6",
            "peak RSS, router (HTTP front, after runs 1b-3) vs the demo backend",
            "MiB",
            base,
            rss,
            _ratio(rss, base),
            "<= 150 MiB",
            rss is not None and rss <= 150,
        )
    )


async def section_3_latency(report: Report, stack: HttpStack) -> None:
    plan = report.plan
    runs: dict[str, list[Latency]] = {"direct": [], "router": [], "fastmcp-proxy": []}
    async with (
        measure.client_for(http_url(stack.backend_port)) as direct,
        measure.client_for(http_url(stack.router_port)) as router,
        measure.client_for(http_url(stack.proxy_port)) as proxy,
    ):
        clients = {
            "direct": (direct, "echo"),
            "router": (router, "demo_echo"),
            "fastmcp-proxy": (proxy, "echo"),
        }
        for c, tool in clients.values():
            await measure.warm_up([c], tool, ECHO_ARGS, 5)

        async def one() -> dict[str, Latency]:
            return {
                name: await measure.sequential(c, tool, ECHO_ARGS, plan.proxy_calls, 120)
                for name, (c, tool) in clients.items()
            }

        for _ in range(plan.repeats):
            for name, lat in (await clean(report, one)).items():
                runs[name].append(lat)
    p50 = {n: median([r.p50 for r in v]) for n, v in runs.items()}
    theirs, ours, direct_p50 = p50["fastmcp-proxy"], p50["router"], p50["direct"]
    speedup = _ratio(theirs, ours)
    report.add(
        Row(
            "3",
            "tools/call p50: mcp-router vs FastMCP proxy (direct column = FastMCP proxy)",
            "ms",
            theirs,
            ours,
            _ratio(ours, theirs),
            ">= 8x faster",
            speedup is not None and speedup >= 8,
            f"ours is {_fmt(speedup, 1)}x faster per call",
        )
    )
    their_added, our_added = theirs - direct_p50, ours - direct_p50
    report.add(
        Row(
            "3",
            "added latency over direct: mcp-router vs FastMCP proxy (direct "
            "column = FastMCP proxy)",
            "ms",
            their_added,
            our_added,
            _ratio(our_added, their_added),
            "",
            None,
            f"ours adds {_fmt(_ratio(their_added, our_added), 1)}x less",
        )
    )
    report.detail(
        "- FastMCP proxy vs router, sequential p50 per repeat: "
        + "; ".join(f"{n} [{_rounds([r.p50 for r in v])}] ms" for n, v in runs.items())
        + f"; {plan.proxy_calls} calls each"
    )


# ---------------------------------------------------------------------------------- 4. ready


def _start_direct_discovery(specs: list[dict[str, Any]], path: Path) -> tuple[float, float | None]:
    """Run the no-router baseline; (seconds from start to ready, its VmHWM in MiB)."""
    path.write_text(json.dumps(specs))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [PYTHON, DIRECT_DISCOVERY, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=child_env(),
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        with INTERFERENCE.window():
            readable, _, _ = select.select([proc.stdout], [], [], 90)
        line = proc.stdout.readline().decode().strip() if readable else ""
        elapsed = time.monotonic() - t0
        if not line.startswith("ready"):
            raise RuntimeError(f"direct discovery failed: {line!r}")
        rss = vm_hwm_mb(proc.pid)
        proc.stdin.write(b"stop\n")
        proc.stdin.flush()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        return elapsed, rss
    finally:
        kill_group(proc)


@dataclass
class ReadyRun:
    """One router start: time to /ready 200, VmHWM then, and whether every backend was in."""

    seconds: float
    rss: float | None
    connected: int
    complete_after: float | None = None  # when ready came first with backends missing


def _router_ready(config: Path, expect_backends: int, expect_tools: int) -> ReadyRun:
    """Start the router and time it to /ready 200.

    A router that declares itself ready with backends still missing (its start-up wait for
    them timed out: the router starts degraded by design) is recorded as such, and the time
    until every backend is in is measured too (up to 60 s more).
    """
    port = free_port()
    t0 = time.monotonic()
    proc = start(router_cmd(config, port))
    try:
        with INTERFERENCE.window():
            t1 = wait_router_ready(port, proc, 90)
        body = ready_body(port)
        rss = vm_hwm_mb(proc.pid)
        run = ReadyRun(t1 - t0, rss, int(body.get("connected", 0)))
        deadline = time.monotonic() + 60
        while body.get("connected") != expect_backends or body.get("tools") != expect_tools:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
            body = ready_body(port)
            run.complete_after = time.monotonic() - t0
        return run
    finally:
        kill_group(proc)


def _import_floor() -> float:
    """Seconds for a fresh interpreter to import what the router imports, and exit."""
    t0 = time.monotonic()
    subprocess.run(
        [PYTHON, "-c", "import mcp_router.cli, mcp_router.gateway.server, mcp_router.gateway.http"],
        check=True,
        env=child_env(),
        cwd=ROOT,
        timeout=60,
    )
    return time.monotonic() - t0


def section_4(report: Report, tmp: Path) -> None:
    plan = report.plan
    tools = 50
    ports = [free_port() for _ in range(10)]
    http_cmds = [
        [PYTHON, TOOLSERVER, "--tools", str(tools), "--transport", "http", "--port", str(p)]
        for p in ports
    ]
    with processes(*http_cmds) as procs:
        for port, proc in zip(ports, procs, strict=True):
            wait_http(http_url(port), 90, proc)
        http_backends = [{"name": f"h{i}", "url": http_url(p)} for i, p in enumerate(ports)]
        variants: dict[str, list[dict[str, Any]]] = {
            "FastMCP stdio": [
                stdio_backend(f"s{i}", [TOOLSERVER, "--tools", str(tools)]) for i in range(10)
            ],
            "raw stdio": [
                stdio_backend(f"s{i}", [TOOLSERVER, "--impl", "raw", "--tools", str(tools)])
                for i in range(10)
            ],
        }
        if plan.quick:  # smoke run: the FastMCP children alone take ~7 s per start
            del variants["FastMCP stdio"]
        results: dict[str, dict[str, list[float]]] = {}
        degraded: dict[str, list[str]] = {v: [] for v in variants}
        rss: dict[str, dict[str, list[float]]] = {}
        for variant, stdio in variants.items():
            backends = stdio + http_backends
            config = write_config(tmp / f"ready-{variant.split()[0]}.yaml", backends)
            specs = [
                {"name": b["name"], "url": b["url"]}
                if "url" in b
                else {
                    "name": b["name"],
                    "command": b["command"],
                    "args": b["args"],
                    "env": b["env"],
                }
                for b in backends
            ]
            res = results[variant] = {"router": [], "direct": []}
            mem = rss[variant] = {"router": [], "direct": []}

            def one(
                config: Path = config, specs: list[dict[str, Any]] = specs
            ) -> tuple[ReadyRun, tuple[float, float | None]]:
                ours = _router_ready(config, 20, 20 * tools)
                return ours, _start_direct_discovery(specs, tmp / "specs.json")

            for _ in range(plan.repeats):
                ours, (dt_, dm) = clean_sync(report, one)
                res["router"].append(ours.seconds)
                mem["router"].append(ours.rss or math.nan)
                res["direct"].append(dt_)
                mem["direct"].append(dm or math.nan)
                if ours.complete_after is not None:
                    degraded[variant].append(
                        f"{ours.connected}/20 connected at ready ({ours.seconds:.2f} s), all "
                        f"at {ours.complete_after:.2f} s"
                    )
        # The router alone: 10 HTTP backends only (no children to start), and bare imports.
        http_only = write_config(tmp / "ready-http-only.yaml", http_backends)
        http_only_times = [
            clean_sync(report, lambda: _router_ready(http_only, 10, 10 * tools)).seconds
            for _ in range(plan.repeats)
        ]
        floor = [_import_floor() for _ in range(plan.repeats)]
    for variant, res in results.items():
        d, r = median(res["direct"]), median(res["router"])
        primary = variant == "FastMCP stdio"
        report.add(
            Row(
                "4",
                f"start -> ready, 20 backends (10 {variant} + 10 HTTP, 50 tools each)",
                "s",
                d,
                r,
                _ratio(r, d),
                "<= 2 s" if primary else "",
                r <= 2.0 if primary else None,
                "direct = one SDK process connecting to the same 20"
                + (
                    f"; {len(degraded[variant])} repeat(s) ready before every backend was in"
                    if degraded[variant]
                    else ""
                ),
            )
        )
        for line in degraded[variant]:
            report.detail(f"  - {variant}: router {line}")
        report.detail(
            f"- ready, {variant}: router [{_rounds(res['router'])}] s, direct "
            f"[{_rounds(res['direct'])}] s"
        )
        rr, dr = median(rss[variant]["router"]), median(rss[variant]["direct"])
        report.add(
            Row(
                "6",
                f"peak RSS at ready, router with 20 backends ({variant}) vs "
                "direct-discovery process",
                "MiB",
                dr,
                rr,
                _ratio(rr, dr),
                "<= 150 MiB",
                rr <= 150,
            )
        )
    report.add(
        Row(
            "4",
            "start -> ready, router with the 10 HTTP backends only",
            "s",
            None,
            median(http_only_times),
            None,
            "",
            None,
            "informational",
        )
    )
    report.add(
        Row(
            "4",
            "fresh interpreter importing the router's modules",
            "s",
            None,
            median(floor),
            None,
            "",
            None,
            "informational: the floor",
        )
    )
    report.detail(
        f"- router with 10 HTTP backends only: [{_rounds(http_only_times)}] s; "
        f"import floor [{_rounds(floor)}] s"
    )


# ---------------------------------------------------------------------------------- 5. list


async def section_5(report: Report, tmp: Path) -> None:
    plan = report.plan
    per, count = 500, 4
    ports = [free_port() for _ in range(count + 1)]
    cmds = [
        [PYTHON, TOOLSERVER, "--tools", str(per), "--transport", "http", "--port", str(p)]
        for p in ports[:count]
    ]
    cmds.append(
        [
            PYTHON,
            TOOLSERVER,
            "--tools",
            str(per * count),
            "--transport",
            "http",
            "--port",
            str(ports[-1]),
        ]
    )
    with processes(*cmds) as procs:
        for port, proc in zip(ports, procs, strict=True):
            wait_http(http_url(port), 90, proc)
        config = write_config(
            tmp / "list.yaml",
            [{"name": f"b{i}", "url": http_url(p)} for i, p in enumerate(ports[:count])],
        )
        rport = free_port()
        with processes(router_cmd(config, rport)) as (router_proc,):
            wait_router_ready(rport, router_proc)
            async with (
                measure.client_for(http_url(ports[-1])) as direct,
                measure.client_for(http_url(rport)) as router,
            ):
                for c in (direct, router):
                    for _ in range(3):
                        await measure.list_all_tools(c)
                d_runs: list[Latency] = []
                r_runs: list[Latency] = []
                d_raw: list[Latency] = []
                r_raw: list[Latency] = []
                n_direct = n_router = b_direct = b_router = 0

                async def one() -> list[tuple[Latency, int]]:
                    return [
                        await measure.list_latency(direct, plan.list_calls, 120),
                        await measure.list_latency(router, plan.list_calls, 120),
                        await measure.raw_list_latency(http_url(ports[-1]), plan.list_calls, 120),
                        await measure.raw_list_latency(http_url(rport), plan.list_calls, 120),
                    ]

                for _ in range(plan.repeats):
                    (a, n_direct), (b, n_router), (c, b_direct), (e, b_router) = await clean(
                        report, one
                    )
                    d_runs.append(a)
                    r_runs.append(b)
                    d_raw.append(c)
                    r_raw.append(e)
    d50, r50 = median([r.p50 for r in d_runs]), median([r.p50 for r in r_runs])
    d99, r99 = median([r.p99 for r in d_runs]), median([r.p99 for r in r_runs])
    note = f"router lists {n_router} tools ({count}x{per} + management), direct {n_direct}"
    report.add(
        Row(
            "5",
            "tools/list of 2,000 tools p50",
            "ms",
            d50,
            r50,
            _ratio(r50, d50),
            "<= 25 ms",
            r50 <= 25,
            note,
        )
    )
    report.add(Row("5", "tools/list of 2,000 tools p99", "ms", d99, r99, _ratio(r99, d99)))
    rd50, rr50 = median([r.p50 for r in d_raw]), median([r.p50 for r in r_raw])
    report.add(
        Row(
            "5",
            "tools/list of 2,000 tools p50, raw HTTP client (server time + transfer, no "
            "SDK parsing)",
            "ms",
            rd50,
            rr50,
            _ratio(rr50, rd50),
            "<= 25 ms",
            rr50 <= 25,
            f"response {b_router / 1024:.0f} KiB via router, {b_direct / 1024:.0f} KiB direct",
        )
    )
    report.detail(
        f"- tools/list p50 per repeat: direct [{_rounds([r.p50 for r in d_runs])}] ms, "
        f"router [{_rounds([r.p50 for r in r_runs])}] ms; raw client: direct "
        f"[{_rounds([r.p50 for r in d_raw])}] ms, router [{_rounds([r.p50 for r in r_raw])}] ms;"
        f" {plan.list_calls} lists each"
    )


# ---------------------------------------------------------------------------------- 7. bridges


async def section_7(report: Report, tmp: Path) -> None:
    """HTTP front -> stdio backend: the router beside two single-server bridges of the same
    stdio server (the demo server, launched by each front), sequential calls, interleaved."""
    plan = report.plan
    demo_cmd = [PYTHON, *DEMO]
    rport, sport, mport = free_port(), free_port(), free_port()
    config = write_config(tmp / "bridge.yaml", [stdio_backend("demo", DEMO)])
    sg_cmd, sg_url = peers.supergateway_cmd(demo_cmd, sport)
    mp_cmd, mp_url = peers.mcp_proxy_cmd(demo_cmd, mport)
    env = peers.peer_env(child_env())
    started: list[subprocess.Popen[Any]] = []
    try:
        router_proc = start(router_cmd(config, rport))
        started.append(router_proc)
        sg = start(sg_cmd, env=env)
        started.append(sg)
        mp = start(mp_cmd, env=env)
        started.append(mp)
        wait_router_ready(rport, router_proc)
        wait_http(sg_url, 90, sg)  # any answer: the port is open
        wait_http(mp_url, 90, mp)
        pids = {"mcp-router": router_proc.pid, "supergateway": sg.pid, "mcp-proxy": mp.pid}
        async with (
            measure.client_for(http_url(rport)) as router,
            measure.client_for(sg_url) as sgc,
            measure.client_for(mp_url) as mpc,
        ):
            targets = {
                "mcp-router": (router, "demo_echo"),
                "supergateway": (sgc, "echo"),
                "mcp-proxy": (mpc, "echo"),
            }
            for client, tool in targets.values():
                await measure.warm_up([client], tool, ECHO_ARGS, plan.lat_warmup)
            runs: dict[str, list[Latency]] = {n: [] for n in targets}
            cpu: dict[str, list[float]] = {n: [] for n in targets}

            async def one() -> dict[str, tuple[Latency, float]]:
                got = {}
                for name, (client, tool) in targets.items():
                    before = cpu_seconds(pids[name])
                    lat = await measure.sequential(client, tool, ECHO_ARGS, plan.lat_calls, 120)
                    used = (cpu_seconds(pids[name]) - before) / plan.lat_calls * 1000
                    got[name] = (lat, used)
                return got

            for _ in range(plan.repeats):
                for name, (lat, used) in (await clean(report, one)).items():
                    runs[name].append(lat)
                    cpu[name].append(used)
    finally:
        for proc in started:
            # A bridge may start its stdio child in a session of its own: stop it too.
            strays = _descendants(proc.pid)
            kill_group(proc)
            for pid in strays:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
    p50 = {n: median([r.p50 for r in v]) for n, v in runs.items()}
    ours = p50["mcp-router"]
    for peer in ("supergateway", "mcp-proxy"):
        theirs = p50[peer]
        report.add(
            Row(
                "7",
                f"HTTP front -> stdio backend p50: mcp-router vs {peer} (direct column = {peer})",
                "ms",
                theirs,
                ours,
                _ratio(ours, theirs),
                f"faster than {peer}",
                ours < theirs,
                f"front CPU per call: ours {_fmt(median(cpu['mcp-router']), 3)} ms, "
                f"theirs {_fmt(median(cpu[peer]), 3)} ms",
            )
        )
    report.detail(
        "- HTTP front -> stdio backend, sequential p50 per repeat: "
        + "; ".join(f"{n} [{_rounds([r.p50 for r in v])}] ms" for n, v in runs.items())
        + "; front process CPU per call: "
        + "; ".join(f"{n} [{_rounds(v)}] ms" for n, v in cpu.items())
        + f"; {plan.lat_calls} calls each (supergateway {peers.SUPERGATEWAY_VERSION}, "
        f"mcp-proxy {peers.MCP_PROXY_VERSION})"
    )


# ---------------------------------------------------------------------------------- report


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("fastmcp", "mcp", "mcp-router"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def source_info() -> str:
    """Which router code was measured: a --src dir, or the checkout's commit (+ dirty flag)."""
    if procs.SRC_OVERRIDE:
        return f"source dir {procs.SRC_OVERRIDE[0]}"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "working tree (git unavailable)"
    return f"working tree at {sha}" + (" + uncommitted changes in src/" if dirty else "")


def _interference(report: Report) -> str:
    shares = report.kept_shares
    if not shares:
        return "-"
    return f"{median(shares) * 100:.0f}%, {max(shares) * 100:.0f}%"


def render(report: Report, elapsed: float) -> str:
    plan = report.plan
    v = versions()
    lines = [
        "# mcp-router benchmark results",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores ({cpu_model()}), {platform.system()} "
        f"{platform.release()}",
        f"- versions: Python {v['python']}, fastmcp {v.get('fastmcp', '?')}, "
        f"mcp {v.get('mcp', '?')}, mcp-router {v.get('mcp-router', '?')}",
        f"- router code: {source_info()}",
        f"- machine load: {report.load_note}; other processes used {_interference(report)} of "
        "the machine's CPU during the kept measurement windows (median, max); "
        f"{report.discarded} repeat(s) re-run because another process used more than "
        f"{CLEAN_SHARE:.0%} of the machine, {report.noisy} kept although noisy",
        f"- run: {'quick' if plan.quick else 'full'}, {plan.repeats} repeats per figure (median "
        f"shown), {plan.lat_calls} sequential calls per latency repeat, {plan.tp_seconds:g} s "
        f"per throughput window, {plan.proxy_calls} calls per FastMCP-proxy latency repeat, "
        f"{plan.list_calls} tools/list per repeat; whole run {elapsed:.0f} s",
        "- client: mcp SDK `Client` (mode legacy, no response cache) for every target; tool "
        "`echo`; backend = the bundled demo server unless stated",
        "",
        "| # | figure | unit | direct | mcp-router | router ÷ direct | target | met |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for row in report.rows:
        met = "" if row.ok is None else ("yes" if row.ok else "**no**")
        figure = row.figure + (f" ({row.note})" if row.note else "")
        lines.append(
            f"| {row.section} | {figure} | {row.unit} | {_fmt(row.direct)} | {_fmt(row.router)} "
            f"| {_fmt(row.ratio)} | {row.target} | {met} |"
        )
    lines += ["", "## Per-repeat values", "", *report.details, ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- main


def _timed(report: Report, name: str, fn: Callable[[], None]) -> None:
    """Run one section; a failure is reported in the table and the run goes on."""
    t0 = time.monotonic()
    print(f"== {name}", flush=True)
    try:
        fn()
    except Exception as exc:  # one broken section must not lose the others' figures
        traceback.print_exc()
        text = f"{type(exc).__name__}: {exc}".replace("|", "/").replace("\n", " ")[:300]
        report.add(Row(name.split()[0], f"{name}: FAILED ({text})", "", None, None, ok=False))
    print(f"   ({time.monotonic() - t0:.1f} s)", flush=True)


SECTION_LIMIT_S = 240.0


async def _bounded(fn: Callable[..., Any], *args: Any) -> None:
    with anyio.fail_after(SECTION_LIMIT_S):
        await fn(*args)


def _run_async(fn: Callable[..., Any], *args: Any) -> None:
    """Run one async section in its own event loop, bounded in time."""
    anyio.run(_bounded, fn, *args)


def _with_devnull(fn: Callable[..., Any], *args: Any) -> None:
    with open(os.devnull, "w") as devnull:
        _run_async(fn, *args, devnull)


class BenchTimeout(BaseException):
    """The whole run exceeded its limit (a BaseException: no section may swallow it)."""


def _on_alarm(_signum: int, _frame: Any) -> None:
    raise BenchTimeout(f"benchmark exceeded its {GLOBAL_LIMIT_S} s limit")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, about a minute")
    parser.add_argument("--repeats", type=int, help="repeats per figure (default 3, min 3)")
    parser.add_argument("--only", help="comma-separated sections to run: 1,2,3,4,5,7")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the machine to be idle (other CPU use < 10%%)",
    )
    parser.add_argument(
        "--src",
        type=Path,
        help="run the router from this source dir (e.g. a `git archive` snapshot's src/) "
        "instead of the installed working tree",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="markdown output (default bench/RESULTS.md, or bench/RESULTS-quick.md with --quick)",
    )
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 3:
        parser.error("--repeats must be at least 3")
    plan = Plan.make(args.quick, args.repeats, args.only)
    if args.src is not None:
        if not (args.src / "mcp_router" / "__init__.py").is_file():
            parser.error(f"--src {args.src}: no mcp_router package there")
        procs.SRC_OVERRIDE.append(str(args.src.resolve()))
    out: Path = args.out or BENCH / ("RESULTS-quick.md" if plan.quick else "RESULTS.md")
    report = Report(plan)
    idle, share = procs.wait_idle(args.wait_idle) if args.wait_idle else (False, 0.0)
    if not args.wait_idle:
        share = procs.machine_busy_share()
        idle = share < 0.1
    load1 = Path("/proc/loadavg").read_text().split()[0]
    report.load_note = f"{share * 100:.0f}% CPU busy before the run, load average {load1}"
    if not idle:
        print(
            f"warning: the machine is busy ({report.load_note}): figures will be noisy",
            file=sys.stderr,
        )
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(GLOBAL_LIMIT_S)
    tmp = Path(f"/tmp/mcp-router-bench-{RUN_ID}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        s = plan.sections
        if "1" in s:
            _timed(
                report, "1a stdio -> stdio latency", lambda: _with_devnull(section_1a, report, tmp)
            )
        if s & {"1", "2", "3"}:
            with_proxy = "3" in s
            with http_stack(tmp, with_proxy) as stack:
                if "1" in s:
                    _timed(
                        report,
                        "1b HTTP -> HTTP latency",
                        lambda: _run_async(section_1b, report, stack),
                    )
                    _timed(
                        report,
                        "1c HTTP -> HTTP latency, 2026-07-28 era",
                        lambda: _run_async(section_1c, report, stack),
                    )
                if with_proxy:
                    _timed(
                        report,
                        "3 FastMCP proxy latency",
                        lambda: _run_async(section_3_latency, report, stack),
                    )
                if s & {"2", "3"}:
                    _timed(
                        report,
                        "2 throughput (and 3 at 8 sessions)",
                        lambda: _run_async(section_2_3, report, stack, with_proxy),
                    )
        if "4" in s:
            _timed(report, "4 start -> ready, 20 backends", lambda: section_4(report, tmp))
        if "5" in s:
            _timed(
                report, "5 tools/list of 2,000 tools", lambda: _run_async(section_5, report, tmp)
            )
        if "7" in s:
            _timed(
                report,
                "7 HTTP front -> stdio backend vs bridges",
                lambda: _run_async(section_7, report, tmp),
            )
        for key, title, figure in EXTRA_SECTIONS:  # figures defined in other modules
            if key in s:
                _timed(report, title, lambda figure=figure: figure(report, tmp))
    finally:
        signal.alarm(0)
        shutil.rmtree(tmp, ignore_errors=True)
        leaked = sweep()
        if leaked:
            print(f"warning: killed {len(leaked)} leaked process(es): {leaked}", file=sys.stderr)
    report.rows.sort(key=lambda r: r.section)
    text = render(report, time.monotonic() - report.started)
    out.write_text(text)
    print()
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
