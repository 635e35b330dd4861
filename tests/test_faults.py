"""Routing and resilience under real faults, with real processes on loopback.

Backends are tests/servers/faulty.py (over HTTP started here, or over stdio started by the
router). The router runs in the test's process (its FastMCP server driven by real MCP client
sessions in memory, so errors are exactly what clients see) except where its own process is
the point: no backend process may outlive it. Faults: a replica killed under concurrent load
and restarted, a backend whose tools hang, a backend that writes garbage on stdout, a stdio
backend that crashes, a fallback chain whose primary goes away and comes back.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from support import (
    PYTHON,
    SERVERS,
    child_env,
    fastmcp_server,
    free_port,
    in_process_router,
    router_client,
    router_cmd,
    spawn,
    wait_http,
    wait_until,
    wait_until_async,
    write_config,
)

pytestmark = pytest.mark.timeout(30)

FAULTY = str(SERVERS / "faulty.py")
# Small timings so every fault plays out in a second or two; the timeouts that are not under
# test stay generous, so a busy machine does not turn slowness into failures.
FAST_HEALTH = {"interval_seconds": 0.2, "timeout_seconds": 3}
FAST_BREAKER = {"failure_threshold": 2, "timeout_seconds": 1, "half_open_attempts": 1}
ROUTING = {
    "request_timeout_seconds": 5,
    "retry": {"max_attempts": 2, "initial_backoff_seconds": 0.05},
}
# A 1 s timeout must fire after 1 s, and not much later.
TIMEOUT_MARGIN = 1.0


# ------------------------------------------------------------------ helpers


class Replica:
    """A faulty.py HTTP server on a fixed port, that can be killed and started again."""

    def __init__(self, name: str, *extra: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.cmd = [*fastmcp_server("faulty", "http", self.port), "--name", name, *extra]
        self._cm: contextlib.AbstractContextManager[subprocess.Popen[Any]] | None = None
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        self._cm = spawn(self.cmd, ready_url=f"http://127.0.0.1:{self.port}/healthz")
        self.proc = self._cm.__enter__()

    def kill(self) -> None:
        """SIGKILL (no graceful shutdown: calls in flight are cut), and wait until it is gone."""
        assert self.proc is not None and self._cm is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)
        self.stop()

    def stop(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            cm.__exit__(None, None, None)


@contextlib.contextmanager
def replicas(*specs: tuple[str, ...]) -> Iterator[list[Replica]]:
    started = [Replica(*spec) for spec in specs]
    try:
        for replica in started:
            replica.start()
        yield started
    finally:
        for replica in started:
            replica.stop()


def stdio_backend(name: str, *extra: str, **overrides: Any) -> dict[str, Any]:
    """A faulty.py backend the router starts over stdio."""
    return {"name": name, "command": PYTHON, "args": [FAULTY, "--name", name, *extra], **overrides}


def http_backend(name: str, url: str, **overrides: Any) -> dict[str, Any]:
    return {"name": name, "url": url, **overrides}


@dataclass
class Outcome:
    ok: bool
    text: str
    data: Any
    started: float
    elapsed: float


async def call(client: Client, tool: str, **arguments: Any) -> Outcome:
    started = time.monotonic()
    result = await client.session.call_tool(tool, arguments)
    elapsed = time.monotonic() - started
    text = " ".join(getattr(c, "text", "") for c in result.content)
    return Outcome(not result.is_error, text, result.structured_content, started, elapsed)


async def management(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def circuit_state(client: Client, backend: str) -> str:
    detail = await management(client, "router_get_backend_health", backend_name=backend)
    return str(detail["circuit_state"])


def process_exists(pid: int) -> bool:
    """True while ``pid`` has a process table entry (a zombie not yet reaped included)."""
    return os.path.exists(f"/proc/{pid}")


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, reparented after its parent died, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


# ------------------------------------------------------------------ kill a replica under load


async def test_killed_replica_fails_only_its_calls_in_flight_and_comes_back(
    tmp_path: Path,
) -> None:
    with replicas(("ra",), ("rb",)) as (ra, rb):
        pool = {"namespace": "pool", "health_check": FAST_HEALTH, "circuit_breaker": FAST_BREAKER}
        config = write_config(
            tmp_path / "pool.yaml",
            [http_backend("a", ra.url, **pool), http_backend("b", rb.url, **pool)],
            ROUTING,
        )
        async with in_process_router(config) as router:
            outcomes: list[Outcome] = []
            stop = anyio.Event()

            async def worker(index: int) -> None:
                async with router_client(router) as client:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        outcomes.append(await call(client, "pool_slow", seconds=0.02, x=n))
                        await anyio.sleep(0.1)  # steady load, not a flood

            async with router_client(router) as admin, anyio.create_task_group() as tg:

                async def both_answer() -> bool:
                    seen = {o.data["instance"] for o in outcomes if o.ok and o.data}
                    return {"ra", "rb"} <= seen and len(outcomes) >= 16

                async def a_is(state: str) -> bool:
                    return await circuit_state(admin, "a") == state

                async def restarted_a_answers() -> bool:
                    return bool(_pids(outcomes, "ra", after=back_at) - first_pids)

                for i in range(8):
                    tg.start_soon(worker, i)
                await wait_until_async(both_answer, 10, "load on both replicas")
                first_pids = _pids(outcomes, "ra")

                await anyio.to_thread.run_sync(ra.kill)  # the clients keep calling meanwhile
                dead_at = time.monotonic()
                await wait_until_async(lambda: a_is("open"), 5, "a's circuit to open")
                await anyio.sleep(0.5)  # b carries the load alone meanwhile
                restart_at = time.monotonic()
                await anyio.to_thread.run_sync(ra.start)
                back_at = time.monotonic()
                await wait_until_async(lambda: a_is("closed"), 15, "a's circuit to close")
                await wait_until_async(restarted_a_answers, 5, "the restarted replica answering")
                stop.set()

        failures = [o for o in outcomes if not o.ok]
        assert len([o for o in outcomes if o.started < dead_at]) >= 16
        # only calls already running on 'a' when it died may fail: at most one per client
        assert len(failures) <= 8, [
            (round(f.started - dead_at, 3), round(f.elapsed, 3), f.text) for f in failures
        ]
        for failure in failures:
            assert failure.started < dead_at, failure.text
            assert "backend 'a'" in failure.text, failure.text
            assert "during the request" in failure.text, failure.text  # closed / lost
        # while 'a' was down, 'b' answered everything
        down = [o for o in outcomes if o.started > dead_at and o.started + o.elapsed < restart_at]
        assert down
        for outcome in down:
            assert outcome.ok and outcome.data["instance"] == "rb", outcome


def _pids(outcomes: list[Outcome], name: str, after: float = 0.0) -> set[int]:
    return {
        o.data["pid"]
        for o in outcomes
        if o.ok and o.data and o.data["instance"] == name and o.started > after
    }


# ------------------------------------------------------------------ an HTTP backend restarts


async def test_call_on_a_restarted_http_backend_is_retried_once_on_the_new_session(
    tmp_path: Path,
) -> None:
    with replicas(("solo",)) as (solo,):
        config = write_config(
            tmp_path / "restart.yaml",
            # no health probes: the call itself must find out, and must not fail
            [http_backend("solo", solo.url, health_check={"enabled": False})],
            {**ROUTING, "retry": {"max_attempts": 1}},
        )
        async with in_process_router(config) as router, router_client(router) as client:
            first = await call(client, "solo_work", x=1)
            assert first.ok
            await anyio.to_thread.run_sync(solo.kill)
            await anyio.to_thread.run_sync(solo.start)

            # the old session is unknown to the new process (404): the router re-initializes
            # and runs this (not idempotent) call once more, since it surely did not run
            second = await call(client, "solo_work", x=2)
            assert second.ok, second.text
            assert second.data["pid"] != first.data["pid"]
            detail = await management(client, "router_get_backend_health", backend_name="solo")
            assert detail["connections"] == 2
            assert detail["error_count"] == 0 and detail["circuit_state"] == "closed"


# ------------------------------------------------------------------ a backend that hangs


async def test_hanging_backend_times_out_opens_its_circuit_and_others_keep_their_latency(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "hang.yaml",
        [
            stdio_backend(
                "stuck",
                "--hang-on-call",
                timeout_seconds=1,
                health_check=FAST_HEALTH,
                circuit_breaker={"failure_threshold": 3, "timeout_seconds": 10},
            ),
            stdio_backend("fine", health_check=FAST_HEALTH),
        ],
        ROUTING,
    )
    async with in_process_router(config) as router, router_client(router) as client:
        for _ in range(5):  # warm up both paths
            assert (await call(client, "fine_work")).ok
        before = [(await call(client, "fine_work")).elapsed for _ in range(30)]

        during: list[float] = []
        stuck: list[Outcome] = []

        async def hang_one() -> None:
            async with router_client(router) as other:
                stuck.append(await call(other, "stuck_work", x=1))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(hang_one)
            await anyio.sleep(0.1)
            while len(stuck) < 3:
                during.append((await call(client, "fine_work")).elapsed)

        # each call gave up at the backend's 1 s timeout, and said so
        for outcome in stuck:
            assert not outcome.ok
            assert 0.95 <= outcome.elapsed <= 1 + TIMEOUT_MARGIN, outcome.elapsed
            assert "backend 'stuck': no answer within 1s (request timeout)" in outcome.text

        # three timeouts = failure_threshold: the circuit is open and calls fail fast
        assert await circuit_state(client, "stuck") == "open"
        fast = await call(client, "stuck_work", x=2)
        assert not fast.ok and fast.elapsed < 0.5
        assert "no healthy backend for tool 'stuck_work'" in fast.text
        assert "backend 'stuck' circuit is open after 3 consecutive failures" in fast.text
        assert "next attempt at" in fast.text and "no answer within 1s" in fast.text

        # the other backend was not slowed down while 'stuck' held calls
        assert len(during) >= 20
        p50_before, p50_during = statistics.median(before), statistics.median(during)
        # (blocked behind the hung calls, they would take about a second each)
        assert p50_during <= p50_before * 3 + 0.02, (p50_before, p50_during)
        health = await management(client, "router_get_backend_health", backend_name="fine")
        assert health["circuit_state"] == "closed" and health["last_probe"]["ok"]


# ------------------------------------------------------------------ garbage on stdout


async def test_garbage_on_stdout_gives_clear_errors_and_the_router_keeps_serving(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "garbage.yaml",
        [
            stdio_backend("noisy", "--garbage", timeout_seconds=1, health_check=FAST_HEALTH),
            stdio_backend("calm", health_check=FAST_HEALTH),
        ],
        ROUTING,
    )
    async with in_process_router(config) as router, router_client(router) as client:
        # an invalid JSON-RPC response: that call fails at once, naming backend and reason
        bad = await call(client, "noisy_garble", kind="response")
        assert not bad.ok and bad.elapsed < 0.5
        assert "backend 'noisy': the backend sent an invalid response" in bad.text
        assert "invalid JSON-RPC" in bad.text

        # a line that is not JSON instead of the answer: a timeout that says what it saw
        lost = await call(client, "noisy_garble", kind="text")
        assert not lost.ok and 0.95 <= lost.elapsed <= 1 + TIMEOUT_MARGIN
        assert "backend 'noisy': no answer within 1s (request timeout)" in lost.text
        assert "meanwhile it sent invalid output: not JSON" in lost.text

        # a stray line next to a good answer: the answer still arrives
        stray = await call(client, "noisy_garble", kind="stray")
        assert stray.ok and "answered after a stray line" in stray.text

        # the router and both backends keep serving
        for name in ("noisy", "calm"):
            outcome = await call(client, f"{name}_work", x=7)
            assert outcome.ok and outcome.data["instance"] == name
        detail = await management(client, "router_get_backend_health", backend_name="noisy")
        assert detail["state"] == "connected"
        assert detail["invalid_messages"] >= 3
        assert detail["connections"] == 1  # garbage does not cost the session


# ------------------------------------------------------------------ a stdio backend that crashes


async def test_crashed_stdio_backend_is_restarted_and_its_tools_work_again(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "crash.yaml",
        [
            stdio_backend(
                "flaky",
                "--crash-after",
                "2",
                health_check=FAST_HEALTH,
                circuit_breaker=FAST_BREAKER,
            )
        ],
        ROUTING,
    )
    async with in_process_router(config) as router, router_client(router) as client:
        first = [await call(client, "flaky_work", x=i) for i in range(2)]
        assert all(o.ok for o in first)
        old_pid = first[0].data["pid"]

        crashed = await call(client, "flaky_work", x=3)
        assert not crashed.ok
        assert "backend 'flaky': connection closed during the request" in crashed.text
        assert "process exited with code 3" in crashed.text

        async def works_again() -> bool:
            outcome = await call(client, "flaky_work", x=4)
            return outcome.ok and outcome.data["pid"] != old_pid

        await wait_until_async(works_again, 15, "the restarted backend to answer", interval=0.2)
        # the router reaped the crashed child: no zombie left behind while it runs
        assert not process_exists(old_pid)
        detail = await management(client, "router_get_backend_health", backend_name="flaky")
        assert detail["connections"] == 2 and detail["last_exit_code"] == 3


async def test_dying_stdio_backend_is_restarted_with_growing_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mcp_router.backends.backend import Backend
    from mcp_router.config.models import BackendConfig

    # exits at once, every time: the supervisor keeps restarting it, backing off
    config = BackendConfig(name="dying", command=PYTHON, args=["-c", "import sys; sys.exit(5)"])
    backend = Backend(config, request_timeout=1)
    caplog.set_level(logging.INFO, logger="mcp_router.backend")
    async with anyio.create_task_group() as tg:
        await tg.start(backend.run)
        await anyio.sleep(2.6)
        assert backend.last_error is not None and "exited with code 5" in backend.last_error
        await backend.stop()
    waits = [
        float(r.getMessage().rsplit(" ", 1)[1].rstrip("s"))
        for r in caplog.records
        if "next connection attempt in" in r.getMessage()
    ]
    assert len(waits) >= 2, waits
    # 0.5 s, 1 s, 2 s ... each with +-20 % jitter: strictly growing
    assert all(later > earlier for earlier, later in itertools.pairwise(waits)), waits
    assert 0.35 <= waits[0] <= 0.65, waits


# ------------------------------------------------------------------ fallback chain


async def test_fallback_chain_uses_secondary_while_primary_is_down_then_primary_again(
    tmp_path: Path,
) -> None:
    with replicas(("primary",)) as (primary,):
        config = write_config(
            tmp_path / "fallback.yaml",
            [
                http_backend(
                    "primary",
                    primary.url,
                    priority=1,
                    routes=[
                        {"pattern": "primary_work", "strategy": "fallback", "fallback_to": "backup"}
                    ],
                    health_check=FAST_HEALTH,
                    circuit_breaker=FAST_BREAKER,
                ),
                stdio_backend("backup", priority=2, health_check=FAST_HEALTH),
            ],
            ROUTING,
        )
        async with in_process_router(config) as router, router_client(router) as client:
            info = await management(client, "router_get_routing_info", tool_name="primary_work")
            assert [c["backend"] for c in info["candidates"]] == ["primary", "backup"]
            assert info["candidates"][1]["reason"] == "fallback for 'primary_work'"
            assert (await call(client, "primary_work")).data["instance"] == "primary"

            primary.kill()
            # primary down -> the secondary answers, from the very first call on
            for x in range(5):
                outcome = await call(client, "primary_work", x=x)
                assert outcome.ok, outcome.text
                assert outcome.data["instance"] == "backup"

            primary.start()

            async def primary_answers() -> bool:
                outcome = await call(client, "primary_work")
                assert outcome.ok, outcome.text
                return bool(outcome.data["instance"] == "primary")

            await wait_until_async(primary_answers, 15, "the primary to answer again", interval=0.2)
            assert await circuit_state(client, "primary") == "closed"


# ------------------------------------------------------------------ no orphans after exit


@pytest.mark.parametrize("exit_by", ["http-sigterm", "stdio-stdin-eof", "stdio-sigterm"])
def test_no_backend_process_outlives_the_router(tmp_path: Path, exit_by: str) -> None:
    pid_files = [tmp_path / f"b{i}.pid" for i in range(2)]
    config = write_config(
        tmp_path / "orphans.yaml",
        [
            stdio_backend(f"b{i}", "--spawn-child", "--pid-file", str(pid_files[i]))
            for i in range(2)
        ],
    )
    if exit_by.startswith("http"):
        port = free_port()
        cmd = router_cmd(config, "--transport", "http", "--port", str(port))
        stdin: Any = subprocess.DEVNULL
    else:
        cmd, stdin = router_cmd(config), subprocess.PIPE
    router = subprocess.Popen(
        cmd,
        env=child_env(),
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        if exit_by.startswith("http"):
            wait_http(f"http://127.0.0.1:{port}/health", 20, router)

        def started() -> bool:
            assert router.poll() is None, "router exited early"
            return all(p.exists() for p in pid_files)

        wait_until(started, 20, "both backends to write their pid files")
        pids = [int(v) for p in pid_files for v in p.read_text().split()]
        assert len(pids) == 4 and all(process_alive(p) for p in pids)  # 2 servers + 2 children

        if exit_by.endswith("sigterm"):
            router.send_signal(signal.SIGTERM)
        else:
            assert router.stdin is not None
            router.stdin.close()
        router.wait(timeout=15)

        wait_until(
            lambda: not any(process_alive(p) for p in pids),
            3,
            "every backend process (servers and their children) to exit with the router",
        )
    finally:
        if router.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(router.pid, signal.SIGKILL)
            router.wait(timeout=5)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
