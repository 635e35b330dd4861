"""/metrics holds exactly the routed calls that were made, plus breaker and health gauges."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from opsupport import bearer_client, sample, scrape
from support import run_router, write_config


@pytest.fixture(scope="module")
def basic_url(start_server: Callable[..., str]) -> str:
    """The basic test backend over streamable HTTP."""
    return start_server("basic", "http", name="m")


def test_counters_and_histograms_hold_exactly_the_calls(basic_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "backends.yaml", [{"name": "basic", "url": basic_url}])
    with run_router(config, tmp_path / "router.log") as router:
        before = scrape(router.base)
        assert not [k for k in before if k[0] == "mcp_router_requests_total"]

        async def calls() -> None:
            async with bearer_client(router.url) as client:
                for key in ("a", "b", "c"):
                    assert not (await client.call_tool("basic_lookup", {"key": key})).is_error
                for values in ([1.0], [2.0, 3.0]):
                    assert not (await client.call_tool("basic_stats", {"values": values})).is_error
                assert (await client.call_tool("basic_explode", {"reason": "x"})).is_error
                assert (await client.call_tool("no_such_tool", {})).is_error
                # Management tools are answered by the router itself: not routed, not counted.
                await client.call_tool("router_list_backends", {})

        anyio.run(calls)
        samples = scrape(router.base)

    def requests(name: str, outcome: str, backend: str = "basic") -> float | None:
        return sample(
            samples,
            "mcp_router_requests_total",
            kind="tool",
            name=name,
            backend=backend,
            outcome=outcome,
        )

    assert requests("basic_lookup", "success") == 3
    assert requests("basic_stats", "success") == 2
    assert requests("basic_explode", "tool_error") == 1
    assert requests("<unknown>", "unknown", backend="none") == 1
    counted = [k for k in samples if k[0] == "mcp_router_requests_total"]
    assert len(counted) == 4  # nothing else was counted (no management calls, no retries)

    hist = {"kind": "tool", "backend": "basic"}
    assert sample(samples, "mcp_router_request_duration_seconds_count", **hist) == 6
    assert sample(samples, "mcp_router_request_duration_seconds_bucket", le="+Inf", **hist) == 6
    total = sample(samples, "mcp_router_request_duration_seconds_sum", **hist)
    assert total is not None and 0 < total < 30
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "mcp_router_request_duration_seconds_bucket"
        and dict(labels)["backend"] == "basic"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative

    # Breaker state and health gauges.
    for state, value in (("closed", 1), ("open", 0), ("half_open", 0)):
        assert (
            sample(samples, "mcp_router_backend_circuit_state", backend="basic", state=state)
            == value
        )
    assert sample(samples, "mcp_router_backend_up", backend="basic") == 1
    assert sample(samples, "mcp_router_backend_healthy", backend="basic") == 1
    assert sample(samples, "mcp_router_backend_in_flight", backend="basic") == 0
    tools = sample(samples, "mcp_router_backend_tools", backend="basic")
    assert tools is not None and tools >= 5
    assert sample(samples, "mcp_router_retries_total", backend="basic") is None
    assert sample(samples, "mcp_router_rate_limited_total") == 0
