"""The status page: ``GET /status`` (self-contained HTML) and ``GET /status.json``.

The page shows every backend's connection state, health, circuit breaker state, tool count,
recent errors and call latency, and refreshes itself from ``/status.json`` every 2 seconds.
Latency and recent errors come from :class:`CallStats`, a small ring buffer per backend fed by
a :class:`~mcp_router.routing.forwarder.Forwarder` observer. Everything shown goes through the
management redaction (``backend_summary``, ``redact_text``): no header or env secret appears.

When the front is protected (``MCP_AUTH_TOKENS``, a token file or JWTs), both routes need a
token the MCP endpoint would accept, as ``Authorization: Bearer`` or as ``?token=`` (so the
page can be opened in a browser; its script passes it on to ``/status.json``).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from mcp_router import __version__
from mcp_router.gateway.management import backend_secrets, backend_summary, redact_text
from mcp_router.routing.forwarder import CallRecord

if TYPE_CHECKING:
    from mcp_router.gateway.server import Router

__all__ = ["CallStats", "register_status_routes", "status_snapshot"]

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

    def recent_errors(self, backend: str, secrets: list[str]) -> list[dict[str, Any]]:
        """The recent failed calls of ``backend``, newest first, secrets redacted."""
        now = time.time()
        return [
            {
                "seconds_ago": round(now - f.at, 1),
                "kind": f.kind,
                "name": f.name,
                "outcome": f.outcome,
                "message": redact_text(f.message, secrets),
            }
            for f in reversed(self._failures.get(backend, ()))
        ]


def status_snapshot(router: Router, stats: CallStats, started_at: float) -> dict[str, Any]:
    """Everything the status page shows, as JSON-ready data (secrets redacted)."""
    manager = router.manager
    backends: list[dict[str, Any]] = []
    all_secrets: list[str] = []
    for backend in manager.backends.values():
        secrets = backend_secrets(backend)
        all_secrets += secrets
        summary = backend_summary(backend)
        summary["calls"] = stats.calls(backend.name)
        summary.update(stats.latency(backend.name))
        summary["recent_errors"] = stats.recent_errors(backend.name, secrets)
        backends.append(summary)
    index = manager.index
    return {
        "version": __version__,
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
        "unrouted_errors": stats.recent_errors(NO_BACKEND, all_secrets),
        "governance": router.governance.status() if router.governance is not None else None,
    }


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
        return HTMLResponse(STATUS_HTML, headers={"Cache-Control": "no-store"})

    @server.custom_route("/status.json", methods=["GET"], include_in_schema=False)
    async def status_json(request: Request) -> Response:
        if not await _authorized(request, router):
            return _unauthorized()
        return JSONResponse(
            status_snapshot(router, stats, started_at), headers={"Cache-Control": "no-store"}
        )

    return stats


STATUS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mcp-router status</title>
<style>
  :root { --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; }
  * { box-sizing: border-box; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
         color: #1f2328; background: #f6f8fa; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  .meta { color: var(--muted); margin-bottom: 16px; }
  .meta span { margin-right: 16px; }
  table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
  th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid var(--line);
           vertical-align: top; }
  th { background: #eaeef2; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .pill { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
          font-weight: 600; color: #fff; }
  .ok { background: var(--ok); } .warn { background: var(--warn); } .bad { background: var(--bad); }
  .errors { margin: 0; padding-left: 16px; color: var(--bad); font-size: 12px; }
  .none { color: var(--muted); }
  #banner { display: none; margin-bottom: 12px; padding: 8px 12px; border-radius: 6px;
            background: #ffebe9; color: var(--bad); border: 1px solid #ff818266; }
</style>
</head>
<body>
<h1>mcp-router</h1>
<div class="meta" id="meta">loading&hellip;</div>
<div id="banner"></div>
<div id="pins"></div>
<table>
  <thead><tr>
    <th>Backend</th><th>Transport</th><th>Connection</th><th>Health</th><th>Circuit</th>
    <th>Tools</th><th>Calls</th><th>p50 latency</th><th>p95 latency</th><th>Recent errors</th>
  </tr></thead>
  <tbody id="backends"><tr><td colspan="10" class="none">loading&hellip;</td></tr></tbody>
</table>
<noscript><p>This page needs JavaScript; the raw data is at
  <a href="status.json">status.json</a>.</p></noscript>
<script>
(function () {
  "use strict";
  var token = new URLSearchParams(location.search).get("token");
  var url = "status.json" + (token ? "?token=" + encodeURIComponent(token) : "");
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function pill(text, kind) { return el("span", "pill " + kind, text); }
  function ms(v) { return v === null || v === undefined ? "\\u2013" : v.toFixed(1) + " ms"; }
  function cell(row, content, cls) {
    var td = el("td", cls);
    if (content instanceof Node) { td.appendChild(content); } else { td.textContent = content; }
    row.appendChild(td);
    return td;
  }
  function render(data) {
    var meta = document.getElementById("meta");
    meta.textContent = "";
    [["version", data.version], ["config", data.config],
     ["ready", data.ready ? "yes" : "no"], ["tools", data.totals.tools],
     ["tool discovery", data.tool_discovery], ["uptime", Math.round(data.uptime_seconds) + " s"],
     ["updated", new Date().toLocaleTimeString()]].forEach(function (kv) {
      meta.appendChild(el("span", null, kv[0] + ": " + kv[1]));
    });
    var body = document.getElementById("backends");
    body.textContent = "";
    if (!data.backends.length) {
      var empty = el("tr"); cell(empty, "no backends configured", "none").colSpan = 10;
      body.appendChild(empty);
    }
    data.backends.forEach(function (b) {
      var row = el("tr");
      row.setAttribute("data-backend", b.name);
      cell(row, el("strong", null, b.name));
      cell(row, b.transport);
      cell(row, pill(b.state,
        b.state === "connected" ? "ok" : (b.state === "starting" ? "warn" : "bad")));
      cell(row, pill(b.healthy ? "healthy" : "unhealthy", b.healthy ? "ok" : "bad"));
      cell(row, pill(b.circuit_state,
        b.circuit_state === "closed" ? "ok" : (b.circuit_state === "open" ? "bad" : "warn")));
      cell(row, b.tools, "num");
      cell(row, b.calls, "num");
      cell(row, ms(b.p50_ms), "num");
      cell(row, ms(b.p95_ms), "num");
      var errors = b.recent_errors.slice(0, 3).map(function (e) {
        return e.kind + " " + e.name + ": " + e.message +
          " (" + Math.round(e.seconds_ago) + " s ago)";
      });
      if (b.last_error && b.state !== "connected") { errors.unshift(b.last_error); }
      if (errors.length) {
        var list = el("ul", "errors");
        errors.forEach(function (t) { list.appendChild(el("li", null, t)); });
        cell(row, list);
      } else {
        cell(row, "none", "none");
      }
      body.appendChild(row);
    });
    var pins = document.getElementById("pins");
    pins.textContent = "";
    var pending = (data.governance && data.governance.pending) || [];
    if (pending.length) {
      pins.appendChild(el("p", "warn-text",
        "Definitions changed since pinned (mcp-router pins list / pins approve):"));
      var plist = el("ul", "errors");
      pending.forEach(function (p) {
        plist.appendChild(el("li", null, p.kind + " " + p.exposed + " on " + p.backend +
          (p.new ? " (new)" : " (changed)") + (p.quarantined ? ": quarantined" : ": served")));
      });
      pins.appendChild(plist);
    }
    document.getElementById("banner").style.display = "none";
    document.body.setAttribute("data-loaded", "true");
  }
  function refresh() {
    fetch(url, { cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(render)
      .catch(function (err) {
        var banner = document.getElementById("banner");
        banner.textContent = "cannot reach the router: " + err.message;
        banner.style.display = "block";
      });
  }
  refresh();
  setInterval(refresh, 2000);
})();
</script>
</body>
</html>
"""
