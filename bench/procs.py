"""Process helpers for the benchmark: loopback only, bounded waits, every child cleaned up.

Every process the bench starts gets ``MCP_BENCH_RUN=<run id>`` in its environment (stdio
backends launched by a router get it through their config's ``env``), so that `sweep()` can
find and stop stragglers of this run, and only of this run, at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# Shared with the test suite: one implementation of the loopback process helpers.
from tests.support import free_port as free_port
from tests.support import kill_group as kill_group
from tests.support import wait_http as wait_http

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
RUN_ID = uuid.uuid4().hex[:12]
MARKER = "MCP_BENCH_RUN"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SRC_OVERRIDE: list[str] = []  # `--src DIR`: children import mcp_router from DIR instead


def child_env(**extra: str) -> dict[str, str]:
    """Environment for children: unbuffered, no banners, tagged with this run's id."""
    env = dict(os.environ)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "FASTMCP_SHOW_SERVER_BANNER": "false",
            "FASTMCP_LOG_LEVEL": "WARNING",
            MARKER: RUN_ID,
        }
    )
    if SRC_OVERRIDE:
        env["PYTHONPATH"] = os.pathsep.join([*SRC_OVERRIDE, env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
    env.update(extra)
    return env


def start(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdin: Any = subprocess.DEVNULL,
    stderr: Any = subprocess.DEVNULL,
) -> subprocess.Popen[Any]:
    """Start a process in its own group; stdout discarded, stderr discarded unless given."""
    return subprocess.Popen(
        list(cmd),
        env=env or child_env(),
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
        cwd=ROOT,
    )


@contextlib.contextmanager
def spawn(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    ready_url: str | None = None,
    timeout: float = 30.0,
) -> Iterator[subprocess.Popen[Any]]:
    """Start a process in its own group; wait for ``ready_url``; kill the group afterwards."""
    proc = start(cmd, env=env)
    try:
        if ready_url:
            wait_http(ready_url, timeout, proc)
        yield proc
    finally:
        kill_group(proc)


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def children_of(ppid: int) -> list[int]:
    """Pids of the direct children of ``ppid``."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[1]) == ppid:
            found.append(int(entry.name))
    return found


def find_child(ppid: int, needle: str, timeout: float = 10.0) -> int:
    """The pid of the child of ``ppid`` whose command line contains ``needle``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in children_of(ppid):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                if needle.encode() in cmdline:
                    return pid
        time.sleep(0.02)
    raise LookupError(f"no child of {ppid} running {needle!r}")


def sweep() -> list[int]:
    """Kill any process still tagged with this run's id (a leak); return their pids."""
    tag = f"{MARKER}={RUN_ID}".encode()
    leaked: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if tag in environ.split(b"\0"):
            leaked.append(int(entry.name))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
    return leaked


def _machine_busy_jiffies() -> int:
    """Busy (non-idle, non-iowait) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


def _run_tree_jiffies() -> int:
    """utime + stime of this process and of every live process tagged with this run's id."""
    tag = f"{MARKER}={RUN_ID}".encode()
    total = 0
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(entry.name) != me and tag not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total


class Interference:
    """How much CPU processes outside this benchmark run used during measurement windows.

    For each window: (machine busy time - this run's processes' CPU time) / (window x cores).
    Other people's builds or tests on the machine show up here; a high share means the
    figures of that run are not trustworthy.
    """

    def __init__(self) -> None:
        self.shares: list[float] = []
        self._start: tuple[float, int, int] | None = None

    def begin(self) -> None:
        self._start = (time.monotonic(), _machine_busy_jiffies(), _run_tree_jiffies())

    def end(self) -> None:
        if self._start is None:
            return
        t0, busy0, ours0 = self._start
        self._start = None
        elapsed = time.monotonic() - t0
        if elapsed < 0.2:
            return
        foreign = (_machine_busy_jiffies() - busy0) - (_run_tree_jiffies() - ours0)
        capacity = elapsed * CLK_TCK * (os.cpu_count() or 1)
        self.shares.append(max(0.0, foreign / capacity))

    @contextlib.contextmanager
    def window(self) -> Iterator[None]:
        self.begin()
        try:
            yield
        finally:
            self.end()


INTERFERENCE = Interference()


def machine_busy_share(seconds: float = 1.0) -> float:
    """Share of the machine's CPU capacity in use over ``seconds`` (any process)."""
    busy0, t0 = _machine_busy_jiffies(), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    return (_machine_busy_jiffies() - busy0) / (elapsed * CLK_TCK * (os.cpu_count() or 1))


def wait_idle(limit: float, threshold: float = 0.1, quiet_seconds: int = 3) -> tuple[bool, float]:
    """Wait up to ``limit`` s for ``quiet_seconds`` consecutive 1-s samples under ``threshold``.

    Returns (became idle, last busy share).
    """
    deadline = time.monotonic() + limit
    quiet = 0
    share = machine_busy_share()
    while True:
        quiet = quiet + 1 if share < threshold else 0
        if quiet >= quiet_seconds:
            return True, share
        if time.monotonic() >= deadline:
            return False, share
        share = machine_busy_share()
