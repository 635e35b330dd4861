"""Prometheus metrics for routed calls and backend state (prometheus-client).

Counters and histograms are fed by the Forwarder's `CallRecord`s (one per routed request,
retries and failovers included) and by a FastMCP middleware that counts calls to unknown
tools, which never reach the Forwarder. Backend gauges are refreshed at scrape time; a backend
removed by a config reload disappears from them.

Label values that come from names (exposed tools, resource URIs, backends) pass through
:func:`mcp_router.secrets.redact`: a resource URI carrying ``?token=`` or a configured secret
never becomes a label. The other labels are fixed vocabularies (kind, outcome, state).
"""

from __future__ import annotations

import re
from typing import Any

from fastmcp.exceptions import NotFoundError
from fastmcp.server.middleware import Middleware, MiddlewareContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mcp_router.backends.manager import BackendManager
from mcp_router.routing.forwarder import CallRecord
from mcp_router.secrets import redact

_STATES = ("closed", "open", "half_open")
# Names clients ask for that do not exist are not used as label values: a client could
# otherwise grow the registry without bound.
UNKNOWN_NAME = "<unknown>"
_EXPRESSION = re.compile(r"\{([+#./;?&]?)[^}]*\}")


def _template_pattern(template: str) -> re.Pattern[str]:
    """A regex matching the URIs a (RFC 6570) URI template expands to, closely enough."""
    parts: list[str] = []
    pos = 0
    for match in _EXPRESSION.finditer(template):
        parts.append(re.escape(template[pos : match.start()]))
        operator = match.group(1)
        if operator in ("+", "#"):
            parts.append(".*")
        elif operator in ("?", "&"):
            parts.append("(?:[?&].*)?")
        else:
            parts.append("[^/?#]*")
        pos = match.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts), re.DOTALL)


class RouterMetrics:
    """One registry per router, so several routers in one process never mix their numbers."""

    def __init__(self, manager: BackendManager) -> None:
        self._manager = manager
        self._known_backends: set[str] = set()
        self._templates_of: tuple[object, list[tuple[re.Pattern[str], str]]] | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter(
            "mcp_router_requests_total",
            "Routed requests by kind, exposed name, final backend and outcome "
            "(success, tool_error, error, no_backend, unknown).",
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
        self.rate_limited = Counter(
            "mcp_router_rate_limited_total",
            "Client requests rejected by the per-client rate limit.",
            registry=self.registry,
        )
        self.reloads = Counter(
            "mcp_router_config_reloads_total",
            "Configuration reloads by outcome (applied, unchanged, rejected, failed).",
            ["outcome"],
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
        self.healthy = Gauge(
            "mcp_router_backend_healthy",
            "1 when the backend is connected and its circuit admits calls, else 0.",
            ["backend"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "mcp_router_backend_in_flight",
            "Requests currently running on the backend.",
            ["backend"],
            registry=self.registry,
        )
        self.tools = Gauge(
            "mcp_router_backend_tools",
            "Tools the backend lists.",
            ["backend"],
            registry=self.registry,
        )

    def label(self, kind: str, exposed: str) -> str:
        """The ``name`` label of a request: a name the catalog lists, else ``<unknown>``.

        Clients choose the names and URIs they send (a resource template takes any URI that
        fits it), so the label is drawn from the catalog: a listed name or URI, or for a
        template instance the exposed template; anything else is ``<unknown>``.
        """
        index = self._manager.index
        if kind == "tool":
            return exposed if exposed in index.tools else UNKNOWN_NAME
        if kind == "prompt":
            return exposed if exposed in index.prompts else UNKNOWN_NAME
        if exposed in index.resources:
            return exposed
        cached = self._templates_of
        if cached is None or cached[0] is not index:
            patterns = [(_template_pattern(t), t) for t in index.templates]
            cached = self._templates_of = (index, patterns)
        for pattern, template in cached[1]:
            if pattern.fullmatch(exposed):
                return template
        return UNKNOWN_NAME

    def observe(self, record: CallRecord) -> None:
        """Count one finished routed request."""
        backend = redact(record.backend) if record.backend else "none"
        name = redact(self.label(record.kind, record.exposed))
        self.calls.labels(record.kind, name, backend, record.outcome).inc()
        self.latency.labels(record.kind, backend).observe(record.duration_ms / 1000)
        retries = record.attempts - 1 - record.failovers
        if retries > 0:
            self.retries.labels(backend).inc(retries)
        if record.failovers:
            self.failovers.labels(name).inc(record.failovers)

    def observe_unknown(self, kind: str) -> None:
        """Count a request for a name or URI the catalog does not have."""
        self.calls.labels(kind, UNKNOWN_NAME, "none", "unknown").inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text, with backend gauges refreshed at scrape time."""
        backends = {redact(name): b for name, b in self._manager.backends.items()}
        for gone in self._known_backends - backends.keys():
            for s in _STATES:
                self.circuit.remove(gone, s)
            for gauge in (self.up, self.healthy, self.in_flight, self.tools):
                gauge.remove(gone)
        self._known_backends = set(backends)
        for label, backend in backends.items():
            state = backend.breaker.state.value
            for s in _STATES:
                self.circuit.labels(label, s).set(1 if s == state else 0)
            connected = backend.state.value == "connected"
            self.up.labels(label).set(1 if connected else 0)
            self.healthy.labels(label).set(1 if backend.healthy else 0)
            self.in_flight.labels(label).set(backend.in_flight)
            self.tools.labels(label).set(len(backend.catalog.tools))
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class UnknownNameMetrics(Middleware):
    """Counts calls to tools and reads of resources the router does not know.

    FastMCP answers those itself (the Forwarder never sees them), so without this they would
    be missing from ``mcp_router_requests_total``.
    """

    def __init__(self, metrics: RouterMetrics) -> None:
        self.metrics = metrics

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        """Count a tools/call whose name is not in the catalog."""
        try:
            return await call_next(context)
        except NotFoundError:
            self.metrics.observe_unknown("tool")
            raise

    async def on_read_resource(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        """Count a resources/read whose URI no backend serves."""
        try:
            return await call_next(context)
        except NotFoundError:
            self.metrics.observe_unknown("resource")
            raise

    async def on_get_prompt(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        """Count a prompts/get whose name is not in the catalog."""
        try:
            return await call_next(context)
        except NotFoundError:
            self.metrics.observe_unknown("prompt")
            raise
