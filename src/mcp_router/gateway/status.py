"""The status page: ``GET /status`` (self-contained HTML) and ``GET /status.json``.

The page shows every backend's connection state, health, circuit breaker state, tool count,
recent errors and call latency, and refreshes itself from ``/status.json`` every 2 seconds.
Latency and recent errors come from :class:`CallStats`, a small ring buffer per backend fed by
a :class:`~mcp_router.routing.forwarder.Forwarder` observer. Everything shown goes through
:mod:`mcp_router.secrets` (the rule logs and the management tools use): no secret appears.
The page itself (HTML, CSS and script) is package data: ``gateway/static/status.html``.

When the front is protected (``MCP_AUTH_TOKENS``, a token file or JWTs), both routes need a
token the MCP endpoint would accept, as ``Authorization: Bearer`` or as ``?token=`` (so the
page can be opened in a browser; its script passes it on to ``/status.json``).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections import deque
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import anyio
from fastmcp import FastMCP
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from mcp_router import __version__
from mcp_router.backends.manager import BackendManager
from mcp_router.config.models import RouterConfig
from mcp_router.gateway.management import backend_summary
from mcp_router.routing.forwarder import CallRecord, Forwarder
from mcp_router.secrets import redact, redact_data


class Router(Protocol):
    """What the status page reads of the running router (`gateway.server.Router`)."""

    config: RouterConfig
    manager: BackendManager
    forwarder: Forwarder
    server: FastMCP
    ready: anyio.Event
    front_auth: Any
    governance: Any  # governance.Governance, or None


__all__ = ["CallStats", "register_status_routes", "status_html", "status_snapshot"]

LATENCY_WINDOW = 200
"""Recent calls per backend kept for the latency percentiles."""
ERROR_WINDOW = 10
"""Recent failed calls kept per backend (and for calls no backend could take)."""
NO_BACKEND = "(none)"


@dataclass(frozen=True, slots=True)
class _Failure:
    at: float
    kind: str
    name: str
    outcome: str
    message: str


class CallStats:
    """Per-backend ring buffers of recent call durations and failures (a Forwarder observer)."""

    def __init__(self, window: int = LATENCY_WINDOW, errors: int = ERROR_WINDOW) -> None:
        self._window = window
        self._errors = errors
        self._durations: dict[str, deque[float]] = {}
        self._failures: dict[str, deque[_Failure]] = {}
        self._calls: dict[str, int] = {}

    def observe(self, record: CallRecord) -> None:
        """Record one finished routed request."""
        backend = record.backend or NO_BACKEND
        self._calls[backend] = self._calls.get(backend, 0) + 1
        if record.backend is not None and record.outcome in ("success", "tool_error"):
            self._durations.setdefault(backend, deque(maxlen=self._window)).append(
                record.duration_ms
            )
        if record.outcome in ("success", "tool_error"):
            return
        message = record.errors[-1] if record.errors else record.outcome
        self._failures.setdefault(backend, deque(maxlen=self._errors)).append(
            _Failure(time.time(), record.kind, record.exposed, record.outcome, message)
        )

    def calls(self, backend: str) -> int:
        """Routed requests that ended on ``backend`` since start."""
        return self._calls.get(backend, 0)

    def latency(self, backend: str) -> dict[str, float | int | None]:
        """p50/p95 (ms) over the recent successful calls of ``backend``, and how many."""
        durations = sorted(self._durations.get(backend, ()))
        if not durations:
            return {"p50_ms": None, "p95_ms": None, "samples": 0}
        return {
            "p50_ms": round(statistics.median(durations), 2),
            "p95_ms": round(durations[min(len(durations) - 1, int(0.95 * len(durations)))], 2),
            "samples": len(durations),
        }

    def recent_errors(self, backend: str) -> list[dict[str, Any]]:
        """The recent failed calls of ``backend``, newest first, secrets redacted."""
        now = time.time()
        return [
            {
                "seconds_ago": round(now - f.at, 1),
                "kind": f.kind,
                "name": f.name,
                "outcome": f.outcome,
                "message": redact(f.message),
            }
            for f in reversed(self._failures.get(backend, ()))
        ]


def status_snapshot(router: Router, stats: CallStats, started_at: float) -> dict[str, Any]:
    """Everything the status page shows, as JSON-ready data (secrets redacted)."""
    manager = router.manager
    backends: list[dict[str, Any]] = []
    for backend in manager.backends.values():
        summary = backend_summary(backend)
        summary["calls"] = stats.calls(backend.name)
        summary.update(stats.latency(backend.name))
        summary["recent_errors"] = stats.recent_errors(backend.name)
        backends.append(summary)
    index = manager.index
    snapshot = {
        "version": __version__,
        "replica": router.settings.replica_id,
        "config": router.config.source,
        "ready": router.ready.is_set(),
        "uptime_seconds": round(time.time() - started_at, 1),
        "tool_discovery": router.config.routing.tool_discovery,
        "totals": {
            "tools": len(index.tools),
            "resources": len(index.resources),
            "resource_templates": len(index.templates),
            "prompts": len(index.prompts),
        },
        "backends": backends,
        "unrouted_errors": stats.recent_errors(NO_BACKEND),
        "governance": router.governance.status() if router.governance is not None else None,
        "state_store": _state_status(router),
    }
    return redact_data(snapshot)  # the config path, names, ...: the same rule for every field


def _state_status(router: Router) -> dict[str, Any] | None:
    """The shared state store (MCP_STATE_URL), None when state stays in the process."""
    store = router.state
    if store is None:
        return None
    out: dict[str, Any] = {"url": store.shown_url(), "reachable": store.healthy}
    if store.problem:
        out["problem"] = store.problem
    shared = router.shared_sessions
    if shared is not None:
        out.update(
            sessions_restored=shared.restored,
            answers_forwarded=shared.forwarded_answers,
            notifications_forwarded=shared.forwarded_notifications,
            get_streams_held=len(shared._streams),
        )
    return out


@functools.cache
def status_html() -> str:
    """The page (package data ``static/status.html``), read once."""
    return (
        resources.files("mcp_router.gateway")
        .joinpath("static/status.html")
        .read_text(encoding="utf-8")
    )


async def _authorized(request: Request, router: Router) -> bool:
    """Whether the request carries a token the front's auth provider accepts (if it has one)."""
    front = getattr(router, "front_auth", None)
    provider = getattr(front, "provider", None)
    if provider is None:
        return True
    given = request.query_params.get("token", "")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        given = header[7:].strip()
    if not given:
        return False
    return await provider.verify_token(given) is not None


def _unauthorized() -> Response:
    return JSONResponse(
        {"error": "unauthorized: pass a valid token as 'Authorization: Bearer' or ?token="},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def register_status_routes(router: Router) -> CallStats:
    """Add ``/status`` and ``/status.json`` and start collecting call stats; return the stats."""
    stats = CallStats()
    router.forwarder.observers.append(stats.observe)
    started_at = time.time()
    server = router.server

    @server.custom_route("/status", methods=["GET"], include_in_schema=False)
    async def status_page(request: Request) -> Response:
        if not await _authorized(request, router):
            return _unauthorized()
        return HTMLResponse(status_html(), headers={"Cache-Control": "no-store"})

    @server.custom_route("/status.json", methods=["GET"], include_in_schema=False)
    async def status_json(request: Request) -> Response:
        if not await _authorized(request, router):
            return _unauthorized()
        return JSONResponse(
            status_snapshot(router, stats, started_at), headers={"Cache-Control": "no-store"}
        )

    return stats
