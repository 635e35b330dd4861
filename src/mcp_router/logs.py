"""Logging set-up: always to stderr (stdout carries the stdio transport), text or JSON lines.

Every line is redacted by :mod:`mcp_router.secrets` (the one secret rule the whole router
uses), so a secret that ends up in an exception message, a library's debug output or a
traceback is still never written out: every formatted line is redacted whole, tracebacks
included (for JSON lines the redactor matches each secret's JSON-escaped form too).

Routed calls get one line each on the ``mcp_router.access`` logger (`telemetry.call_logger`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from mcp_router.secrets import redact

__all__ = [
    "JsonFormatter",
    "RedactingFormatter",
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
