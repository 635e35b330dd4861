"""Read-only management tools (namespace ``router``): backends, health, routing decisions.

Nothing here can start a process or change where the router connects. Everything they return
goes through :mod:`mcp_router.secrets` (the rule logs and ``/status`` use too).
"""

from __future__ import annotations

import time
from typing import Any

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations

from mcp_router.backends.backend import Backend
from mcp_router.backends.manager import BackendManager
from mcp_router.routing.forwarder import Forwarder, UnknownComponentError
from mcp_router.secrets import redact_data, redact_url

_READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def backend_summary(backend: Backend) -> dict[str, Any]:
    """One backend as `router_list_backends` shows it (secrets redacted)."""
    breaker = backend.breaker
    summary = {
        "name": backend.name,
        "transport": backend.transport,
        "namespace": backend.namespace,
        "priority": backend.priority,
        "state": backend.state.value,
        "healthy": backend.healthy,
        "circuit_state": breaker.state.value,
        "error_count": breaker.total_failures,
        "in_flight": backend.in_flight,
        # one per era the router speaks with it: the handshake session's, and 2026-07-28 when
        # the backend speaks it too (backends/eras.py; a stdio backend is probed on first use)
        "protocol_versions": backend.protocol_versions,
        **backend.catalog.counts,
        "last_error": backend.last_error,
    }
    return redact_data(summary)


def backend_detail(backend: Backend) -> dict[str, Any]:
    """One backend in detail (for `router_get_backend_health`)."""
    probe = backend.last_probe
    detail = backend_summary(backend)
    detail.update(
        {
            "url": redact_url(backend.config.url, backend.config.secret_path_segments),
            "command": backend.config.command,
            "protocol_version": backend.protocol_version,
            "server_info": backend.server_info.model_dump() if backend.server_info else None,
            "connected_since": backend.connected_at,
            "connections": backend.connect_count,
            "request_timeout_seconds": backend.request_timeout,
            "circuit_breaker": {
                **breaker_snapshot(backend),
                "failure_threshold": backend.config.circuit_breaker.failure_threshold,
                "timeout_seconds": backend.config.circuit_breaker.timeout_seconds,
                "half_open_attempts": backend.config.circuit_breaker.half_open_attempts,
            },
            "health_check": {
                "enabled": backend.config.health_check.enabled,
                "interval_seconds": backend.config.health_check.interval_seconds,
                "timeout_seconds": backend.config.health_check.timeout_seconds,
                "endpoint": redact_url(backend.config.health_check.endpoint),
            },
            "last_probe": None
            if probe is None
            else {
                "ok": probe.ok,
                "latency_ms": None if probe.latency_ms is None else round(probe.latency_ms, 3),
                "at": probe.at,
                "seconds_ago": round(time.time() - probe.at, 3),
                "error": probe.error,
            },
            "invalid_messages": backend.invalid_messages,
            "last_invalid_message": backend.last_invalid_message,
            "last_exit_code": backend.last_exit_code,
            "availability": None
            if backend.state.value == "connected"
            else backend.unavailable_reason(),
        }
    )
    return redact_data(detail)


def breaker_snapshot(backend: Backend) -> dict[str, Any]:
    """The breaker's state, with its last failure reason redacted."""
    return redact_data(backend.breaker.snapshot())


def register_management_tools(
    server: FastMCP, manager: BackendManager, forwarder: Forwarder, replica_id: str | None = None
) -> None:
    """Add the ``router_*`` tools to the server."""

    @server.tool(name="router_list_backends", annotations=_READ_ONLY)
    async def router_list_backends() -> dict[str, Any]:
        """List every backend MCP server behind this router: name, transport, namespace,
        priority, whether it is healthy, its circuit breaker state, error count, how many
        tools/resources/prompts it offers, and its last error."""
        listed: dict[str, Any] = {
            "backends": [backend_summary(b) for b in manager.backends.values()]
        }
        if replica_id is not None:
            listed["replica"] = replica_id  # which replica of a set answered (MCP_REPLICA_ID)
        return listed

    @server.tool(name="router_get_backend_health", annotations=_READ_ONLY)
    async def router_get_backend_health(backend_name: str) -> dict[str, Any]:
        """Detailed health of one backend: connection state, circuit breaker (state, failure
        counts, when it will be retried), last health probe and its latency."""
        backend = manager.backends.get(backend_name)
        if backend is None:
            known = ", ".join(manager.backends) or "none"
            raise ToolError(f"unknown backend '{backend_name}' (known backends: {known})")
        return backend_detail(backend)

    @server.tool(name="router_get_routing_info", annotations=_READ_ONLY)
    async def router_get_routing_info(tool_name: str) -> dict[str, Any]:
        """Explain how a call to an exposed tool name would be routed right now: the original
        tool name, the candidate backends in the order the next call will try them and why
        each was chosen, and the backends skipped (for example because their circuit is open).
        Asking does not change the routing (round-robin rotation is not advanced)."""
        try:
            # A preview: the balancing state is read, not advanced, so this is the next call's
            # order (unless another call or a change of load/health comes first).
            entry, decision = forwarder.tool_decision(tool_name, preview=True)
        except UnknownComponentError as exc:
            raise ToolError(f"{exc}; call tools/list for the exposed names") from exc
        described = decision.describe()
        last = forwarder.last_routing.get(tool_name)
        return redact_data(
            {
                "tool_name": tool_name,
                "original_name": entry.original_name,
                "namespace": entry.namespace,
                "safe_to_retry": entry.safe_to_retry,
                "candidates": [d for d in described if not d["skipped"]],
                "skipped": [d for d in described if d["skipped"]],
                "last_call_tried": forwarder.last_decisions.get(tool_name),
                "last_call_candidates": None
                if last is None
                else [c.backend.name for c in last.candidates],
            }
        )
