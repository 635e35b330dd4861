"""Logging set-up: always to stderr (stdout carries the stdio transport), text or JSON lines.

Every line is redacted by :mod:`mcp_router.secrets` (the one secret rule the whole router
uses), so a secret that ends up in an exception message, a library's debug output or a
traceback is still never written out: every formatted line is redacted whole, tracebacks
included (for JSON lines the redactor matches each secret's JSON-escaped form too).

Routed calls get one line each on the ``mcp_router.access`` logger (see :func:`call_logger`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp_router.secrets import redact

if TYPE_CHECKING:
    from mcp_router.routing.forwarder import CallRecord

__all__ = [
    "JsonFormatter",
    "RedactingFormatter",
    "call_logger",
    "configure_logging",
]

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

access_logger = logging.getLogger("mcp_router.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra=`` fields.

    The encoded line is redacted (:func:`mcp_router.secrets.redact`).
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        # One pass over the encoded line: the redactor also knows every secret's JSON-escaped
        # form, and its structural patterns never consume an escape.
        return redact(json.dumps(data, default=str))


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner`` (a text format), then redacts the whole line, traceback included."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send every log record (ours, FastMCP's, uvicorn's) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()  # redacts field by field itself
    else:
        formatter = RedactingFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("fastmcp", "mcp", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx2"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Per-request chatter from the libraries stays out of INFO logs.
    for name in ("uvicorn.access", "httpx2", "httpcore2", "mcp.server.lowlevel.server"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def call_logger(fmt: str) -> Callable[[CallRecord], None]:
    """A Forwarder observer writing one line per routed call on ``mcp_router.access``.

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
        access_logger.log(
            level,
            "%s %s -> %s: %s in %.1f ms",
            record.kind,
            record.exposed,
            record.backend or "-",
            record.outcome,
            duration,
            extra=fields,
        )

    return observe
