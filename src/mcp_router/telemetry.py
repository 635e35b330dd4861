"""OpenTelemetry tracing: one span per routed call, exported over OTLP when asked for.

Spans go through ``opentelemetry-api`` (installed with FastMCP), which is a no-op until a
tracer provider is set. :func:`setup_tracing` sets one only when ``MCP_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set *and* ``opentelemetry-sdk`` and
``opentelemetry-exporter-otlp-proto-http`` are installed (they are not dependencies of the
router: ``pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http``). FastMCP's own
request spans then get exported too, and each routed call's span is their child.

The routed-call span is recorded from the Forwarder's `CallRecord` once the call has finished,
with the call's real start and end times.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from mcp_router.secrets import redact

if TYPE_CHECKING:
    from mcp_router.routing.forwarder import CallRecord
    from mcp_router.settings import RouterSettings

logger = logging.getLogger("mcp_router.telemetry")

INSTRUMENTATION_NAME = "mcp_router"
_FAILED = frozenset({"error", "no_backend"})


def otlp_endpoint(settings: RouterSettings) -> str | None:
    """The configured OTLP endpoint (``MCP_OTLP_ENDPOINT`` wins), or None: tracing off."""
    return settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None


def setup_tracing(settings: RouterSettings) -> bool:
    """Install an OTLP/HTTP exporting tracer provider if an endpoint is configured.

    Returns True when spans will be exported. Without the optional packages it logs how to
    get them and returns False; the router runs the same either way.
    """
    endpoint = otlp_endpoint(settings)
    if endpoint is None:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "OTLP endpoint %s is set but tracing is off: install opentelemetry-sdk and "
            "opentelemetry-exporter-otlp-proto-http to export spans",
            endpoint,
        )
        return False
    # Like the standard variable, the endpoint is a base URL; traces go to /v1/traces.
    traces_url = endpoint.rstrip("/")
    if not traces_url.endswith("/v1/traces"):
        traces_url += "/v1/traces"
    service = os.environ.get("OTEL_SERVICE_NAME") or "mcp-router"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url)))
    trace.set_tracer_provider(provider)
    logger.info("tracing: exporting spans to %s as service %r", traces_url, service)
    return True


def flush_tracing(timeout_seconds: float = 3.0) -> None:
    """Export the spans still buffered (blocking, bounded); a no-op when tracing is off.

    Called when the router stops: uvicorn re-raises SIGTERM once it has shut down, so the
    process ends without running ``atexit`` hooks and the SDK's own flush at exit never runs.
    """
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is None:
        return  # the API's default provider: nothing is buffered
    try:
        force_flush(int(timeout_seconds * 1000))
    except Exception as exc:  # an unreachable collector must not break shutdown
        logger.warning("could not export the last spans: %s", exc)


def record_span(record: CallRecord) -> None:
    """A Forwarder observer: one ``mcp_router.route`` span for a finished routed call.

    It runs in the call's own context, so the span's parent is the request span FastMCP
    opened (when tracing is on); when it is off, the API's no-op tracer makes this nearly free.
    """
    tracer = trace.get_tracer(INSTRUMENTATION_NAME)
    end = time.time_ns()
    start = end - int(record.duration_ms * 1_000_000)
    name = redact(record.exposed)  # a resource URI may carry ?token=: spans follow the rule too
    span = tracer.start_span(
        f"route {record.kind} {name}",
        kind=SpanKind.INTERNAL,
        start_time=start,
        attributes={
            "mcp_router.kind": record.kind,
            "mcp_router.name": name,
            "mcp_router.backend": record.backend or "",
            "mcp_router.outcome": record.outcome,
            "mcp_router.attempts": record.attempts,
            "mcp_router.failovers": record.failovers,
        },
    )
    if record.outcome in _FAILED:
        # Error texts may quote a backend URL: exported spans are scrubbed like log lines.
        message = redact(record.errors[-1]) if record.errors else None
        span.set_status(Status(StatusCode.ERROR, message))
    span.end(end_time=end)


access_logger = logging.getLogger("mcp_router.access")


def call_logger(
    fmt: str, identity: Callable[[], str | None] | None = None
) -> Callable[[CallRecord], None]:
    """A Forwarder observer writing one line per routed call on ``mcp_router.access``.

    ``identity`` names who made the call (a token name or JWT subject, never the token); it
    is asked only when a line is written.

    JSON logs are meant for a log pipeline, where one record per call is the point: INFO.
    Text logs are read by people at a terminal (or in a desktop client's log pane), where a
    line per call drowns everything else: DEBUG.
    """
    level = logging.INFO if fmt == "json" else logging.DEBUG

    def observe(record: CallRecord) -> None:
        if not access_logger.isEnabledFor(level):
            return
        duration = round(record.duration_ms, 3)
        fields: dict[str, Any] = {
            "kind": record.kind,
            record.kind: record.exposed,  # "tool": ..., "resource": ..., "prompt": ...
            "backend": record.backend,
            "outcome": record.outcome,
            "duration_ms": duration,
            "attempts": record.attempts,
            "failovers": record.failovers,
        }
        if record.outcome not in ("success", "tool_error") and record.errors:
            fields["error"] = record.errors[-1]
        who = identity() if identity is not None else None
        if who is not None:
            fields["identity"] = who
        access_logger.log(
            level,
            "%s %s -> %s: %s in %.1f ms%s",
            record.kind,
            record.exposed,
            record.backend or "-",
            record.outcome,
            duration,
            f" by {who}" if who is not None else "",
            extra=fields,
        )

    return observe
