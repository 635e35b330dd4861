"""Prometheus metrics for routed calls and backend state (prometheus-client)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mcp_router.backends.manager import BackendManager
from mcp_router.routing.forwarder import CallRecord

_STATES = ("closed", "open", "half_open")


class RouterMetrics:
    """One registry per router, so several routers in one process never mix their numbers."""

    def __init__(self, manager: BackendManager) -> None:
        self._manager = manager
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter(
            "mcp_router_requests_total",
            "Routed requests by kind, exposed name, final backend and outcome.",
            ["kind", "name", "backend", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mcp_router_request_duration_seconds",
            "Duration of routed requests, retries and failovers included.",
            ["kind", "backend"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.retries = Counter(
            "mcp_router_retries_total",
            "Retries of a request on the same backend.",
            ["backend"],
            registry=self.registry,
        )
        self.failovers = Counter(
            "mcp_router_failovers_total",
            "Requests that moved on to another backend.",
            ["name"],
            registry=self.registry,
        )
        self.circuit = Gauge(
            "mcp_router_backend_circuit_state",
            "1 for the backend's current circuit state, 0 for the others.",
            ["backend", "state"],
            registry=self.registry,
        )
        self.up = Gauge(
            "mcp_router_backend_up",
            "1 when the backend has a live session, else 0.",
            ["backend"],
            registry=self.registry,
        )
        self.tools = Gauge(
            "mcp_router_backend_tools",
            "Tools the backend lists.",
            ["backend"],
            registry=self.registry,
        )

    def observe(self, record: CallRecord) -> None:
        """Count one finished routed request."""
        backend = record.backend or "none"
        self.calls.labels(record.kind, record.exposed, backend, record.outcome).inc()
        self.latency.labels(record.kind, backend).observe(record.duration_ms / 1000)
        retries = record.attempts - 1 - record.failovers
        if retries > 0:
            self.retries.labels(backend).inc(retries)
        if record.failovers:
            self.failovers.labels(record.exposed).inc(record.failovers)

    def render(self) -> tuple[bytes, str]:
        """The exposition text, with backend gauges refreshed at scrape time."""
        for backend in self._manager.backends.values():
            state = backend.breaker.state.value
            for s in _STATES:
                self.circuit.labels(backend.name, s).set(1 if s == state else 0)
            self.up.labels(backend.name).set(1 if backend.state.value == "connected" else 0)
            self.tools.labels(backend.name).set(len(backend.catalog.tools))
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
