"""Logging set-up: always to stderr (stdout carries the stdio transport), text or JSON lines.

Every line passes through a redactor that replaces known secret values (backend header values,
secret-looking env values, tokens in backend URLs, the front's bearer tokens) with ``***``, so
a secret that ends up in an exception message, a library's debug output or a traceback is still
never written out. The redactor works on the final formatted line, tracebacks included.

Routed calls get one line each on the ``mcp_router.access`` logger (see :func:`call_logger`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from mcp_router.config.models import RouterConfig
    from mcp_router.routing.forwarder import CallRecord

__all__ = [
    "JsonFormatter",
    "RedactingFormatter",
    "call_logger",
    "config_secrets",
    "configure_logging",
    "redact",
    "set_secrets",
]

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

# Shorter values are too likely to occur in ordinary text to be replaced everywhere.
_MIN_SECRET_LEN = 4
_SECRET_NAME = re.compile(
    r"(?i)(auth|token|secret|passw|pwd|key|cookie|session|signature|sig$|credential|bearer)"
)

# Headers whose values are never secrets (and too common to scrub from every line); any other
# configured header value is treated as one, whatever its name.
_PLAIN_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-type",
        "user-agent",
    }
)
# Client credentials are not known in advance (JWTs): scrub anything shaped like one.
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")

access_logger = logging.getLogger("mcp_router.access")


class _Secrets:
    """The process-wide set of values to redact, longest first (so no partial leftovers)."""

    def __init__(self) -> None:
        self.values: tuple[str, ...] = ()
        self.pattern: re.Pattern[str] | None = None

    def set(self, values: Iterable[str]) -> None:
        unique = {v for v in values if v and len(v) >= _MIN_SECRET_LEN}
        self.values = tuple(sorted(unique, key=len, reverse=True))
        self.pattern = (
            re.compile("|".join(re.escape(v) for v in self.values)) if self.values else None
        )


_SECRETS = _Secrets()


def set_secrets(values: Iterable[str]) -> None:
    """Replace the values every log line is scrubbed of (called at start-up and on reload)."""
    _SECRETS.set(values)


def redact(text: str) -> str:
    """``text`` with every registered secret value, and any bearer token, replaced by ``***``."""
    pattern = _SECRETS.pattern
    if pattern is not None:
        text = pattern.sub("***", text)
    return _BEARER.sub(r"\1***", text)


def _url_secrets(url: str | None) -> list[str]:
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [p for p in (parts.username, parts.password) if p]
    found += [
        v for k, v in parse_qsl(parts.query, keep_blank_values=False) if _SECRET_NAME.search(k)
    ]
    return found


def _header_secrets(value: str) -> list[str]:
    # "Bearer abc" -> "Bearer abc" and "abc", so the token alone is caught too.
    found = [value]
    scheme, _, rest = value.partition(" ")
    if rest.strip() and scheme.isalpha():
        found.append(rest.strip())
    return found


def config_secrets(config: RouterConfig, extra: Iterable[str] = ()) -> set[str]:
    """Values in ``config`` that must never be shown: header values, secret-looking env values
    and URL parts (userinfo, ``?token=`` style query values), plus ``extra``."""
    found: set[str] = set(extra)
    for backend in config.backends:
        for name, value in backend.headers.items():
            if name.lower() not in _PLAIN_HEADERS:
                found.update(_header_secrets(value))
        for name, value in backend.env.items():
            if _SECRET_NAME.search(name):
                found.add(value)
        found.update(_url_secrets(backend.url))
        found.update(_url_secrets(backend.health_check.endpoint))
    return {v for v in found if len(v) >= _MIN_SECRET_LEN}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra=`` fields."""

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
        return json.dumps(data, default=str)


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then scrubs registered secrets from the whole line."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        if isinstance(self.inner, JsonFormatter) and _SECRETS.pattern is not None:
            # A secret inside a JSON string may be escaped (quotes, backslashes): scrub both.
            for value in _SECRETS.values:
                escaped = json.dumps(value)[1:-1]
                if escaped != value:
                    text = text.replace(escaped, "***")
        return redact(text)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send every log record (ours, FastMCP's, uvicorn's) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    inner: logging.Formatter
    if fmt == "json":
        inner = JsonFormatter()
    else:
        inner = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    handler.setFormatter(RedactingFormatter(inner))
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
