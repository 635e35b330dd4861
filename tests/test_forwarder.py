"""Forwarder rules with fake backends: retries, failover, breaker accounting, error messages.

DESIGN.md "Routing semantics": a tool's error result is the answer (never retried, never
failed over); a call is retried on the same backend only when it surely did not reach it or
the tool is idempotent / read-only; timeouts are not retried on the same backend; one routed
call counts once on a backend's breaker, however many attempts it took.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from mcp_router.backends.manager import AggregatedIndex, ExposedTool
from mcp_router.config.models import RouterConfig, RouteRule
from mcp_router.errors import (
    BackendConnectionError,
    BackendTimeoutError,
    BackendUnavailableError,
)
from mcp_router.resilience import CircuitBreaker, CircuitState, RetryPolicy
from mcp_router.routing.engine import RoutingEngine
from mcp_router.routing.forwarder import Forwarder, RoutingError
from support import PYTHON, SERVERS, in_process_router, router_client

pytestmark = pytest.mark.timeout(10)


def ok(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


@dataclass
class FakeBackend:
    """Serves one tool; each call takes the next scripted outcome (a result or an exception)."""

    name: str
    namespace: str = "pool"
    script: list[Any] = field(default_factory=list)
    priority: int = 100
    in_flight: int = 0
    routes: Sequence[RouteRule] = ()
    threshold: int = 3
    calls: int = 0
    breaker: CircuitBreaker = field(init=False)

    def __post_init__(self) -> None:
        self.breaker = CircuitBreaker(
            self.name, failure_threshold=self.threshold, timeout_seconds=30, half_open_attempts=1
        )

    def serves_tool(self, original_name: str) -> bool:
        return original_name == "work"

    async def call_tool(self, name: str, arguments: Any, **_: Any) -> types.CallToolResult:
        self.calls += 1
        outcome = self.script.pop(0) if self.script else ok(self.name)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class FakeManager:
    """Just what the Forwarder reads: the index of exposed tools."""

    def __init__(self, *, idempotent: bool) -> None:
        annotations = types.ToolAnnotations(idempotent_hint=True) if idempotent else None
        tool = types.Tool(
            name="pool_work", input_schema={"type": "object"}, annotations=annotations
        )
        self.index = AggregatedIndex(
            tools={"pool_work": ExposedTool("pool_work", "pool", "pool", "work", tool)}
        )


class SleepRecorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make(
    *backends: FakeBackend,
    idempotent: bool = False,
    balancing: str = "least_in_flight",
    max_attempts: int = 3,
) -> tuple[Forwarder, SleepRecorder]:
    sleep = SleepRecorder()
    engine = RoutingEngine(list(backends), load_balancing=balancing)  # type: ignore[arg-type]
    retry = RetryPolicy(max_attempts=max_attempts, initial_backoff=0.01, sleep=sleep)
    return Forwarder(FakeManager(idempotent=idempotent), engine, retry), sleep  # type: ignore[arg-type]


def not_reached(name: str) -> BackendConnectionError:
    return BackendConnectionError(name, "cannot connect", reached=False)


def reached(name: str) -> BackendConnectionError:
    return BackendConnectionError(name, "connection closed during the request", reached=True)


# ------------------------------------------------------------------ the answer is the answer


async def test_tool_error_result_is_the_answer_never_retried_nor_failed_over() -> None:
    error_result = types.CallToolResult(
        content=[types.TextContent(type="text", text="boom")], is_error=True
    )
    a = FakeBackend("a", script=[error_result], priority=1)
    b = FakeBackend("b", priority=2)
    forwarder, sleep = make(a, b, idempotent=True)
    records: list[Any] = []
    forwarder.observers.append(records.append)

    result = await forwarder.call_tool("pool_work", {})

    assert result is error_result
    assert (a.calls, b.calls) == (1, 0)
    assert sleep.waits == []
    assert a.breaker.total_successes == 1 and a.breaker.total_failures == 0
    assert records[0].outcome == "tool_error" and records[0].attempts == 1


async def test_protocol_error_is_the_answer_and_counts_as_success() -> None:
    a = FakeBackend("a", priority=1, script=[MCPError(code=types.INVALID_PARAMS, message="bad x")])
    b = FakeBackend("b", priority=2)
    forwarder, _ = make(a, b, idempotent=True)

    with pytest.raises(MCPError, match="bad x"):
        await forwarder.call_tool("pool_work", {})

    assert (a.calls, b.calls) == (1, 0)
    assert a.breaker.total_successes == 1 and a.breaker.total_failures == 0


# ------------------------------------------------------------------ retries on the same backend


async def test_not_reached_is_retried_on_the_same_backend_even_when_not_idempotent() -> None:
    a = FakeBackend("a", priority=1, script=[not_reached("a"), not_reached("a")])
    b = FakeBackend("b", priority=2)
    forwarder, sleep = make(a, b, idempotent=False)

    result = await forwarder.call_tool("pool_work", {})

    assert result.content[0].text == "a"  # type: ignore[union-attr]
    assert (a.calls, b.calls) == (3, 0)
    assert len(sleep.waits) == 2
    # three attempts, one routed call: the breaker sees one success and no failure
    assert a.breaker.total_successes == 1 and a.breaker.total_failures == 0


async def test_reached_failure_of_non_idempotent_tool_is_neither_retried_nor_failed_over() -> None:
    a = FakeBackend("a", priority=1, script=[reached("a")])
    b = FakeBackend("b", priority=2)
    forwarder, sleep = make(a, b, idempotent=False)

    with pytest.raises(RoutingError) as info:
        await forwarder.call_tool("pool_work", {})

    message = str(info.value)
    assert "backend 'a'" in message and "connection closed during the request" in message
    assert "not retried" in message
    assert (a.calls, b.calls) == (1, 0)
    assert sleep.waits == []
    assert a.breaker.total_failures == 1


async def test_reached_failure_of_idempotent_tool_is_retried_then_failed_over_counting_once() -> (
    None
):
    a = FakeBackend("a", priority=1, script=[reached("a")] * 3)
    b = FakeBackend("b", priority=2)
    forwarder, sleep = make(a, b, idempotent=True)
    records: list[Any] = []
    forwarder.observers.append(records.append)

    result = await forwarder.call_tool("pool_work", {})

    assert result.content[0].text == "b"  # type: ignore[union-attr]
    assert (a.calls, b.calls) == (3, 1)
    assert len(sleep.waits) == 2
    # three failed attempts on 'a' are one failed call for its breaker
    assert a.breaker.total_failures == 1 and a.breaker.consecutive_failures == 1
    assert b.breaker.total_successes == 1
    assert records[0].failovers == 1 and records[0].backend == "b"
    assert forwarder.last_decisions["pool_work"] == ["a", "b"]


async def test_timeout_is_not_retried_on_the_same_backend_but_fails_over_when_idempotent() -> None:
    a = FakeBackend("a", priority=1, script=[BackendTimeoutError("a", 1.5)])
    b = FakeBackend("b", priority=2)
    forwarder, sleep = make(a, b, idempotent=True)

    result = await forwarder.call_tool("pool_work", {})

    assert result.content[0].text == "b"  # type: ignore[union-attr]
    assert (a.calls, b.calls) == (1, 1)
    assert sleep.waits == []
    assert a.breaker.total_failures == 1


async def test_timeout_of_non_idempotent_tool_names_backend_and_duration() -> None:
    a = FakeBackend("a", priority=1, script=[BackendTimeoutError("a", 1.5)])
    b = FakeBackend("b", priority=2)
    forwarder, _ = make(a, b, idempotent=False)

    with pytest.raises(RoutingError) as info:
        await forwarder.call_tool("pool_work", {})

    assert "backend 'a': no answer within 1.5s (request timeout)" in str(info.value)
    assert (a.calls, b.calls) == (1, 0)


async def test_unavailable_backend_fails_over_at_once_without_retrying_it() -> None:
    down = BackendUnavailableError("a", "unavailable (cannot connect); next attempt in 2.0s")
    a = FakeBackend("a", priority=1, script=[down])
    b = FakeBackend("b", priority=2)
    forwarder, sleep = make(a, b, idempotent=False)

    result = await forwarder.call_tool("pool_work", {})

    assert result.content[0].text == "b"  # type: ignore[union-attr]
    assert (a.calls, b.calls) == (1, 1)
    assert sleep.waits == []


# ------------------------------------------------------------------ breakers and messages


async def test_consecutive_failed_calls_open_the_circuit_and_it_is_skipped() -> None:
    a = FakeBackend("a", priority=1, threshold=2, script=[not_reached("a")] * 2)
    b = FakeBackend("b", priority=2)
    forwarder, _ = make(a, b, idempotent=False, max_attempts=1)

    for _ in range(2):
        assert (await forwarder.call_tool("pool_work", {})).content[0].text == "b"  # type: ignore[union-attr]
    assert a.breaker.state is CircuitState.OPEN
    calls_before = a.calls
    assert (await forwarder.call_tool("pool_work", {})).content[0].text == "b"  # type: ignore[union-attr]
    assert a.calls == calls_before  # skipped, not tried


async def test_no_healthy_backend_message_names_each_backend_and_when_it_reopens() -> None:
    a = FakeBackend("a", priority=1, threshold=1, script=[not_reached("a")])
    b = FakeBackend("b", priority=2, threshold=1, script=[BackendTimeoutError("b", 2)])
    forwarder, _ = make(a, b, idempotent=True, max_attempts=1)

    with pytest.raises(RoutingError) as first:
        await forwarder.call_tool("pool_work", {})
    assert "no healthy backend for tool 'pool_work'" in str(first.value)
    assert "backend 'a': cannot connect" in str(first.value)
    assert "backend 'b': no answer within 2s" in str(first.value)

    with pytest.raises(RoutingError) as second:
        await forwarder.call_tool("pool_work", {})
    message = str(second.value)
    assert message.startswith("no healthy backend for tool 'pool_work': ")
    for name in ("a", "b"):
        assert re.search(
            rf"backend '{name}' circuit is open after 1 consecutive failures; "
            r"next attempt at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d+\.\ds\)",
            message,
        ), message
    assert "last failure: cannot connect" in message
    assert (a.calls, b.calls) == (1, 1)


async def test_half_open_backend_gets_one_trial_and_closes_on_success() -> None:
    clock = [0.0]
    a = FakeBackend("a", priority=1, threshold=1, script=[not_reached("a")])
    a.breaker = CircuitBreaker("a", 1, 5, 1, clock=lambda: clock[0], wall_clock=lambda: 0.0)
    b = FakeBackend("b", priority=2)
    forwarder, _ = make(a, b, max_attempts=1)

    await forwarder.call_tool("pool_work", {})
    assert a.breaker.state is CircuitState.OPEN
    clock[0] = 6.0
    assert a.breaker.state is CircuitState.HALF_OPEN
    result = await forwarder.call_tool("pool_work", {})
    assert result.content[0].text == "a"  # type: ignore[union-attr]
    assert a.breaker.state is CircuitState.CLOSED


# ------------------------------------------------------------------ previews are faithful


@pytest.mark.parametrize("balancing", ["round_robin", "least_in_flight"])
async def test_preview_does_not_advance_rotation_and_predicts_the_next_call(
    balancing: str,
) -> None:
    backends = [FakeBackend(n) for n in ("a", "b", "c")]
    forwarder, _ = make(*backends, balancing=balancing)
    answered: list[str] = []
    for _ in range(7):
        _, first = forwarder.tool_decision("pool_work", preview=True)
        _, again = forwarder.tool_decision("pool_work", preview=True)
        preview = [c.backend.name for c in first.candidates]
        assert preview == [c.backend.name for c in again.candidates]
        result = await forwarder.call_tool("pool_work", {})
        used = forwarder.last_routing["pool_work"]
        assert [c.backend.name for c in used.candidates] == preview
        answered.append(result.content[0].text)  # type: ignore[union-attr]
        assert answered[-1] == preview[0]
    assert answered == ["a", "b", "c", "a", "b", "c", "a"]


# ------------------------------------------------------------------ the same, end to end


@pytest.mark.timeout(30)
@pytest.mark.parametrize("balancing", ["round_robin", "least_in_flight"])
async def test_routing_info_shows_the_order_the_next_call_really_uses(balancing: str) -> None:
    """Three real replicas behind an in-process router: before each call, the management
    tool's candidate order is exactly the order the Forwarder then uses, and the replica that
    answers is its first candidate."""
    backends = [
        {
            "name": f"r{i}",
            "namespace": "pool",
            "command": PYTHON,
            "args": [str(SERVERS / "faulty.py"), "--name", f"r{i}"],
        }
        for i in range(3)
    ]
    config = RouterConfig.model_validate(
        {"backends": backends, "routing": {"load_balancing": balancing}}
    )
    async with in_process_router(config) as router, router_client(router) as client:
        answered: list[str] = []
        for _ in range(6):
            info = await client.session.call_tool(
                "router_get_routing_info", {"tool_name": "pool_work"}
            )
            assert info.structured_content is not None
            preview = [c["backend"] for c in info.structured_content["candidates"]]
            assert sorted(preview) == ["r0", "r1", "r2"]

            result = await client.session.call_tool("pool_work", {"x": 1})
            assert not result.is_error and result.structured_content is not None
            used = router.forwarder.last_routing["pool_work"]
            assert [c.backend.name for c in used.candidates] == preview
            assert router.forwarder.last_decisions["pool_work"] == preview[:1]
            assert result.structured_content["instance"] == preview[0]
            answered.append(preview[0])

            after = await client.session.call_tool(
                "router_get_routing_info", {"tool_name": "pool_work"}
            )
            assert after.structured_content is not None
            assert after.structured_content["last_call_candidates"] == preview
            assert after.structured_content["last_call_tried"] == preview[:1]
        # consecutive calls rotate over the three equal replicas
        assert answered[:3] == ["r0", "r1", "r2"] and answered[3:] == answered[:3]
