"""The audit trail (``MCP_AUDIT_LOG``): one JSON line per routed request.

Each line holds the time, the identity (token name, JWT subject, ``local`` or ``anonymous``),
the MCP session, the method, the exposed name, the backend that answered, the outcome
(``success``, ``tool_error``, ``denied``, ``error``), the duration and the names of the
arguments; never an argument value, never a token. A file is opened for appending (it
survives restarts) and every line is flushed as it is written; ``-`` writes to stderr.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

__all__ = ["METHODS", "OUTCOMES", "AuditLog"]

logger = logging.getLogger("mcp_router.audit")

METHODS = {"tool": "tools/call", "resource": "resources/read", "prompt": "prompts/get"}
"""The MCP method of each routed request kind."""
# What the forwarder reports, in the audit trail's four words.
OUTCOMES = {
    "success": "success",
    "tool_error": "tool_error",
    "denied": "denied",
    "error": "error",
    "no_backend": "error",
}


class AuditLog:
    """Appends audit lines to a file (or stderr for ``-``)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._stream: IO[str]
        if target == "-":
            self._stream = sys.stderr
            self._owned = False
        else:
            path = Path(target).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = path.open("a", encoding="utf-8", buffering=1)
            self._owned = True

    def write(
        self,
        *,
        identity: str,
        session: str | None,
        method: str,
        name: str,
        backend: str | None,
        outcome: str,
        duration_ms: float,
        argument_keys: Iterable[str] = (),
        **extra: Any,
    ) -> None:
        """Write one line (argument names only: the values never reach this function)."""
        line: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "identity": identity,
            "session": session,
            "method": method,
            "name": name,
            "backend": backend,
            "outcome": OUTCOMES.get(outcome, "error"),
            "duration_ms": round(duration_ms, 3),
            "argument_keys": sorted(argument_keys),
        }
        line.update(extra)
        text = json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            with self._lock:
                self._stream.write(text)
                self._stream.flush()
        except (OSError, ValueError) as exc:  # disk full, file closed: never fail the call
            logger.error("audit line not written to %s: %s", self.target, exc)

    def close(self) -> None:
        """Close the file (stderr stays open)."""
        if self._owned:
            self._stream.close()
