"""Active health checks: probe semantics against the breaker, and real backends going away.

Unit tests drive `HealthChecker.probe` on a fake backend with a fake breaker clock (what each
outcome does to the circuit). Integration tests probe real faulty.py servers: an HTTP health
endpoint that turns unhealthy, a server killed and restarted (recovered by probes alone, with
no call), and a router whose backend restarts with a new tool: it is re-discovered, clients
get ``notifications/tools/list_changed``, and backend stderr lands in the router's log.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import METHOD_NOT_FOUND

from mcp_router.backends.backend import Backend, BackendState, ProbeResult
from mcp_router.backends.health import HealthChecker, resolve_endpoint
from mcp_router.config.models import BackendConfig, RouterConfig
from mcp_router.errors import BackendConnectionError
from mcp_router.resilience.circuit_breaker import CircuitBreaker, CircuitState
from support import (
    PYTHON,
    SERVERS,
    fastmcp_server,
    free_port,
    in_process_router,
    router_client,
    run_router,
    spawn,
    wait_until_async,
    write_config,
)

pytestmark = pytest.mark.timeout(30)

FAULTY = str(SERVERS / "faulty.py")


# ------------------------------------------------------------------ a fake backend


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class Target:
    """What the health checker reads and calls on a backend."""

    name: str = "t"
    threshold: int = 3
    half_open_attempts: int = 1
    interval: float = 0.05
    connect_timeout: float = 0.05
    state: BackendState = BackendState.CONNECTED
    has_session: bool = True
    in_backoff: bool = False
    in_flight: int = 0
    last_probe: ProbeResult | None = None
    ping_error: Exception | None = None
    pings: int = 0
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.config = BackendConfig(
            name=self.name,
            command="unused",
            connect_timeout_seconds=self.connect_timeout,
            health_check={"interval_seconds": self.interval, "timeout_seconds": 1},
        )
        self.breaker = CircuitBreaker(
            self.name,
            failure_threshold=self.threshold,
            timeout_seconds=10,
            half_open_attempts=self.half_open_attempts,
            clock=self.clock,
        )

    def unavailable_reason(self) -> str:
        return "unavailable (cannot connect); next connection attempt in 1.0s"

    async def ping(self, timeout: float) -> float:
        self.pings += 1
        if self.ping_error is not None:
            raise self.ping_error
        return 1.5


def checker(*targets: Target) -> HealthChecker:
    return HealthChecker(lambda: targets)  # type: ignore[arg-type, return-value]


def call_fails(target: Target, reason: str = "call failed") -> None:
    permit = target.breaker.acquire()
    assert permit is not None
    permit.failure(reason)


DOWN = BackendConnectionError("t", "cannot connect to 127.0.0.1:1", reached=False)


# ------------------------------------------------------------------ probe -> breaker rules


async def test_failed_probes_count_as_failures_and_open_the_circuit() -> None:
    target = Target(threshold=3, ping_error=DOWN)
    probes = checker(target)
    for expected in (CircuitState.CLOSED, CircuitState.CLOSED, CircuitState.OPEN):
        result = await probes.probe(target)  # type: ignore[arg-type]
        assert target.breaker.state is expected
    assert not result.ok and result.latency_ms is None
    assert result.error == "cannot connect to 127.0.0.1:1"
    assert target.last_probe is result
    assert (
        target.breaker.last_failure_reason == "health probe failed: cannot connect to 127.0.0.1:1"
    )


async def test_successful_probe_records_latency_but_does_not_reset_failing_calls() -> None:
    target = Target(threshold=3)
    probes = checker(target)
    call_fails(target)
    call_fails(target)
    result = await probes.probe(target)  # type: ignore[arg-type]
    assert result.ok and result.latency_ms == 1.5 and result.error is None
    # a ping answering says nothing about calls that time out: the count goes on
    assert target.breaker.consecutive_failures == 2
    call_fails(target)
    assert target.breaker.state is CircuitState.OPEN


async def test_ping_answered_with_an_error_still_shows_the_backend_is_alive() -> None:
    target = Target(threshold=1, ping_error=MCPError(METHOD_NOT_FOUND, "Method not found"))
    result = await checker(target).probe(target)  # type: ignore[arg-type]
    assert result.ok and result.latency_ms is not None
    assert target.breaker.state is CircuitState.CLOSED


async def test_backend_down_without_session_is_forced_open_with_the_reason() -> None:
    target = Target(has_session=False, in_backoff=True)
    result = await checker(target).probe(target)  # type: ignore[arg-type]
    assert not result.ok and result.error == target.unavailable_reason()
    assert target.pings == 0
    assert target.breaker.state is CircuitState.OPEN
    message = str(target.breaker.open_error())
    assert "backend 't' circuit was forced open" in message
    assert "last failure: no session: unavailable (cannot connect)" in message


async def test_session_being_reopened_is_not_forced_open_until_it_overruns() -> None:
    target = Target(has_session=False, in_backoff=False, interval=0.05, connect_timeout=0.05)
    probes = checker(target)
    await probes.probe(target)  # type: ignore[arg-type]
    assert target.breaker.state is CircuitState.CLOSED  # a restart in progress: left alone
    await anyio.sleep(0.15)  # longer than interval + connect timeout: it hangs
    await probes.probe(target)  # type: ignore[arg-type]
    assert target.breaker.state is CircuitState.OPEN


async def test_probes_close_a_circuit_they_opened_once_the_backend_is_back() -> None:
    target = Target(has_session=False, in_backoff=True, half_open_attempts=2)
    probes = checker(target)
    await probes.probe(target)  # type: ignore[arg-type]
    assert target.breaker.state is CircuitState.OPEN
    target.has_session, target.in_backoff = True, False
    await probes.probe(target)  # type: ignore[arg-type]
    assert target.breaker.state is CircuitState.OPEN  # OPEN: probes run, record nothing
    target.clock.now += 10
    assert target.breaker.state is CircuitState.HALF_OPEN
    await probes.probe(target)  # type: ignore[arg-type]
    assert target.breaker.half_open_successes == 1
    await probes.probe(target)  # type: ignore[arg-type]
    assert target.breaker.state is CircuitState.CLOSED  # no call was needed


async def test_probe_trial_that_fails_opens_the_circuit_again() -> None:
    target = Target(has_session=False, in_backoff=True)
    probes = checker(target)
    await probes.probe(target)  # type: ignore[arg-type]
    target.has_session, target.in_backoff, target.ping_error = True, False, DOWN
    target.clock.now += 10
    await probes.probe(target)  # type: ignore[arg-type]
    assert target.breaker.state is CircuitState.OPEN
    target.ping_error = None
    target.clock.now += 10
    await probes.probe(target)  # type: ignore[arg-type]
    assert target.breaker.state is CircuitState.CLOSED  # that reopening was the probes' too


async def test_probes_leave_trial_slots_to_calls_that_are_running() -> None:
    target = Target(has_session=False, in_backoff=True)
    probes = checker(target)
    await probes.probe(target)  # type: ignore[arg-type]
    target.has_session, target.in_backoff = True, False
    target.clock.now += 10
    target.in_flight = 1  # real calls are running: the trial slots are theirs
    for _ in range(3):
        assert (await probes.probe(target)).ok  # type: ignore[arg-type]
    assert target.breaker.state is CircuitState.HALF_OPEN
    assert target.breaker.half_open_trials_in_flight == 0
    assert target.breaker.half_open_successes == 0
    assert target.breaker.allow()


async def test_probes_never_close_a_circuit_that_calls_opened() -> None:
    target = Target(threshold=2)
    probes = checker(target)
    call_fails(target, "no answer within 1s (request timeout)")
    call_fails(target, "no answer within 1s (request timeout)")
    assert target.breaker.state is CircuitState.OPEN
    target.clock.now += 10
    for _ in range(3):
        assert (await probes.probe(target)).ok  # type: ignore[arg-type]
    # pings answer, but only a real call can show the tools work again
    assert target.breaker.state is CircuitState.HALF_OPEN
    assert target.breaker.half_open_successes == 0


async def test_checker_follows_the_backends_it_is_given_and_stops_cleanly() -> None:
    first, second = Target(name="first", interval=0.05), Target(name="second", interval=0.05)
    current: list[Target] = [first]
    probes = HealthChecker(lambda: current)  # type: ignore[arg-type, return-value]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(probes.run)
            await wait_until_async(lambda: first.pings >= 3, 2, "first to be probed")
            current.append(second)  # e.g. added by a config reload
            await wait_until_async(lambda: second.pings >= 3, 2, "second to be probed")
            current.remove(first)
            await anyio.sleep(0.1)
            pings = first.pings
            await anyio.sleep(0.2)
            assert first.pings == pings  # forgotten
            probes.stop()
    assert second.last_probe is not None and second.last_probe.ok


def test_endpoint_is_an_absolute_url_or_a_path_on_the_backend_url() -> None:
    def backend(endpoint: str | None, **where: str) -> Any:
        return SimpleNamespace(
            config=BackendConfig(name="b", health_check={"endpoint": endpoint}, **where)
        )

    url = "http://127.0.0.1:9/mcp"
    assert resolve_endpoint(backend("/healthz", url=url)) == "http://127.0.0.1:9/healthz"
    assert resolve_endpoint(backend("http://10.0.0.1/up", url=url)) == "http://10.0.0.1/up"
    assert resolve_endpoint(backend("http://10.0.0.1/up", command="x")) == "http://10.0.0.1/up"
    assert resolve_endpoint(backend("/healthz", command="x")) is None  # nothing to resolve on
    assert resolve_endpoint(backend(None, url=url)) is None


# ------------------------------------------------------------------ real backends


class HttpServer:
    """A faulty.py HTTP server on a fixed port that can be killed and started again."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self._cm: contextlib.AbstractContextManager[subprocess.Popen[Any]] | None = None

    def start(self, *extra: str) -> None:
        cmd = [*fastmcp_server("faulty", "http", self.port), "--name", self.name, *extra]
        self._cm = spawn(cmd, ready_url=f"http://127.0.0.1:{self.port}/healthz")
        self._cm.__enter__()

    def stop(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            cm.__exit__(None, None, None)


@contextlib.contextmanager
def http_server(name: str) -> Iterator[HttpServer]:
    server = HttpServer(name)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def probed_backend(server: HttpServer, **health: Any) -> Backend:
    config = BackendConfig(
        name=server.name,
        url=server.url,
        connect_timeout_seconds=5,
        health_check={"interval_seconds": 0.2, "timeout_seconds": 3, **health},
        circuit_breaker={"failure_threshold": 2, "timeout_seconds": 1, "half_open_attempts": 1},
    )
    return Backend(config, request_timeout=5)


async def test_probes_ping_and_get_the_health_endpoint_of_an_http_backend() -> None:
    with http_server("web") as server:
        backend = probed_backend(server, endpoint="/healthz")
        probes = HealthChecker(lambda: [backend])
        async with anyio.create_task_group() as tg:
            await tg.start(backend.run)
            assert await backend.wait_ready(10)
            tg.start_soon(probes.run)
            await wait_until_async(lambda: backend.last_probe is not None, 5, "a first probe")
            assert backend.last_probe is not None and backend.last_probe.ok
            assert backend.last_probe.latency_ms is not None and backend.last_probe.latency_ms > 0

            await backend.call_tool("set_health", {"status": 503})
            await wait_until_async(
                lambda: backend.breaker.state is CircuitState.OPEN, 5, "circuit open"
            )
            probe = backend.last_probe
            assert probe is not None and not probe.ok
            assert probe.error == f"GET http://127.0.0.1:{server.port}/healthz: HTTP 503"
            assert backend.breaker.last_failure_reason == f"health probe failed: {probe.error}"

            await backend.call_tool("set_health", {"status": 200})
            # opened by probes, so probes may close it: no call needed
            await wait_until_async(
                lambda: backend.breaker.state is CircuitState.CLOSED, 5, "circuit closed"
            )
            probes.stop()
            await backend.stop()


async def test_killed_http_backend_is_opened_and_recovered_by_probes_alone() -> None:
    with http_server("phoenix") as server:
        backend = probed_backend(server)
        probes = HealthChecker(lambda: [backend])
        async with anyio.create_task_group() as tg:
            await tg.start(backend.run)
            assert await backend.wait_ready(10)
            tg.start_soon(probes.run)

            server.stop()
            await wait_until_async(
                lambda: backend.breaker.state is CircuitState.OPEN, 5, "circuit open"
            )
            assert backend.last_probe is not None and not backend.last_probe.ok
            assert "cannot connect to 127.0.0.1" in (backend.last_probe.error or "")
            assert "health probe failed: cannot connect" in str(backend.breaker.open_error())

            server.start()
            # the next probe finds the old session gone (404), the backend re-initializes, the
            # ping runs again on the new session, and the probe's trial closes the circuit
            await wait_until_async(
                lambda: backend.breaker.state is CircuitState.CLOSED, 15, "recovery"
            )
            assert backend.connect_count == 2
            assert backend.last_probe is not None and backend.last_probe.ok
            assert backend.breaker.total_successes >= 1
            probes.stop()
            await backend.stop()


@pytest.mark.timeout(90)  # a router process: its start-up is slow on a busy machine
async def test_a_restarted_backend_with_a_new_tool_is_rediscovered_and_serves_it(
    tmp_path: Path,
) -> None:
    fast = {"interval_seconds": 0.2, "timeout_seconds": 3}
    breaker = {"failure_threshold": 2, "timeout_seconds": 1, "half_open_attempts": 1}
    with http_server("alpha") as alpha:
        config = write_config(
            tmp_path / "relist.yaml",
            [{"name": "alpha", "url": alpha.url, "health_check": fast, "circuit_breaker": breaker}],
            {"request_timeout_seconds": 5},
        )
        with run_router(config, tmp_path / "router.log") as router:
            async with Client(router.url, mode="legacy") as client:
                tools = {t.name for t in (await client.session.list_tools()).tools}
                assert "alpha_work" in tools and "alpha_bonus" not in tools

                alpha.stop()
                alpha.start("--extra-tool")  # same port, one more tool

                async def listed_with_bonus() -> set[str]:
                    tools = {t.name for t in (await client.session.list_tools()).tools}
                    return tools if "alpha_bonus" in tools else set()

                tools = await wait_until_async(listed_with_bonus, 15, "alpha re-discovered")
                assert "alpha_work" in tools

                async def bonus_answer() -> str:
                    bonus = await client.session.call_tool("alpha_bonus", {})
                    return "" if bonus.is_error else bonus.content[0].text  # type: ignore[union-attr]

                # its circuit (opened by probes while it was down) closes within ~1 s
                answer = await wait_until_async(bonus_answer, 15, "alpha_bonus answered")
                assert "bonus from alpha" in answer

                health = await client.session.call_tool(
                    "router_get_backend_health", {"backend_name": "alpha"}
                )
                detail = health.structured_content
                assert detail is not None and detail["connections"] == 2
                assert detail["last_probe"]["ok"] and detail["health_check"]["enabled"]
            log = router.stderr()
        assert log.count("backend 'alpha' connected over http") == 2  # re-initialized once


@pytest.mark.timeout(90)  # a router process: its start-up is slow on a busy machine
def test_a_stdio_backends_stderr_is_in_the_router_log_under_its_name(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "stderr.yaml",
        [{"name": "beta", "command": PYTHON, "args": [FAULTY, "--name", "beta"]}],
    )
    with run_router(config, tmp_path / "router.log") as router:
        router.wait_log("[beta stderr] faulty beta started (pid ")


async def test_clients_get_list_changed_when_a_restarted_backend_changed_its_tools() -> None:
    with http_server("alpha") as alpha:
        config = RouterConfig.model_validate(
            {
                "backends": [
                    {
                        "name": "alpha",
                        "url": alpha.url,
                        "health_check": {"interval_seconds": 0.2, "timeout_seconds": 3},
                    }
                ]
            }
        )
        notified: list[str] = []

        async def on_message(message: Any) -> None:
            if method := getattr(message, "method", None):
                notified.append(method)

        async with (
            in_process_router(config) as router,
            router_client(router, message_handler=on_message) as client,
        ):
            await client.session.list_tools()
            alpha.stop()
            alpha.start("--extra-tool")
            await wait_until_async(
                lambda: "alpha_bonus" in router.manager.index.tools, 15, "rediscovery"
            )
            # the listener broadcast as the index changed: allow a moment for delivery
            await wait_until_async(
                lambda: "notifications/tools/list_changed" in notified, 2, "list_changed"
            )
