"""Pinned definitions: a canonical hash of every tool, prompt and resource template.

The first time the router sees a definition it pins it (stores its canonical JSON and hash).
When the backend later serves a different definition under the same name, the change is
*pending* until someone runs ``mcp-router pins approve``; what that means for clients depends
on the pinning mode (see :mod:`mcp_router.governance.core`).

Keys are ``backend:kind:original-name`` (the backend's own name, before namespacing or
renaming), so a definition is tied to the server that serves it, and a renamed tool is a new
one. The store is behind :class:`PinStore`; :class:`FilePinStore` keeps a JSON file, written
atomically (temporary file + rename) under an exclusive ``flock`` so routers and the CLI that
share it never lose each other's updates.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import mcp_types as types

__all__ = [
    "FilePinStore",
    "PinKind",
    "PinState",
    "PinStore",
    "canonical_definition",
    "default_pins_path",
    "definition_hash",
    "pin_key",
    "render_diff",
]

PinKind = Literal["tool", "prompt", "template"]
_FORMAT = 1

# The fields that make a definition what a model reads and what a call sends.
_FIELDS: dict[str, tuple[str, ...]] = {
    "tool": ("name", "title", "description", "inputSchema", "outputSchema", "annotations"),
    "prompt": ("name", "title", "description", "arguments"),
    "template": ("name", "title", "description", "uriTemplate", "mimeType", "annotations"),
}


def canonical_definition(
    kind: PinKind, component: types.Tool | types.Prompt | types.ResourceTemplate
) -> dict[str, Any]:
    """The pinned fields of a definition, as plain JSON data (absent fields left out)."""
    data = component.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {key: data[key] for key in _FIELDS[kind] if key in data}


def definition_hash(definition: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no whitespace, UTF-8)."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pin_key(backend: str, kind: PinKind, name: str) -> str:
    """The store key of one definition (backend names hold no ``:``)."""
    return f"{backend}:{kind}:{name}"


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def default_pins_path() -> Path:
    """``$XDG_STATE_HOME/mcp-router/pins.json`` (``~/.local/state/...`` by default)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "mcp-router" / "pins.json"


@dataclass
class PinState:
    """Everything pinned, and every change waiting for approval.

    ``pins[key]`` and ``pending[key]`` are records: ``backend``, ``kind``, ``name`` (the
    backend's), ``exposed`` (the name clients see, as last seen), ``hash``, ``definition``,
    ``at``. A pending record of a definition never pinned before has ``new: true``.
    """

    pins: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> PinState:
        """Read the stored form (an empty state for anything unrecognisable)."""
        if not isinstance(data, dict):
            return cls()
        pins, pending = data.get("pins"), data.get("pending")
        return cls(
            pins=dict(pins) if isinstance(pins, dict) else {},
            pending=dict(pending) if isinstance(pending, dict) else {},
        )

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {"format": _FORMAT, "pins": self.pins, "pending": self.pending}

    def approve(self, key: str) -> dict[str, Any]:
        """Accept the pending definition of ``key``: it becomes the pinned one."""
        record = self.pending.pop(key)
        record = {k: v for k, v in record.items() if k not in ("new", "seen_at")}
        record["at"] = now_iso()
        self.pins[key] = record
        return record

    def find_pending(self, name: str) -> list[str]:
        """Pending keys a user's NAME means: an exposed name, a key, or ``backend:name``."""
        found = []
        for key, record in self.pending.items():
            short = f"{record.get('backend')}:{record.get('name')}"
            if name in (key, short, record.get("exposed")):
                found.append(key)
        return found


class PinStore(Protocol):
    """Where pins live. One implementation per medium (a file now; Redis can be one class)."""

    def describe(self) -> str:
        """Where, for logs and the CLI."""
        ...

    def stamp(self) -> object:
        """A cheap token that changes whenever the stored state may have changed."""
        ...

    def read(self) -> PinState:
        """The stored state."""
        ...

    def modify(self, change: Callable[[PinState], bool]) -> PinState:
        """Read, apply ``change`` (True = it changed something), store; atomic; the new state."""
        ...


class FilePinStore:
    """A JSON file; every update is a locked read-modify-write, written by atomic rename."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def describe(self) -> str:
        """The file's path."""
        return str(self.path)

    def stamp(self) -> object:
        """(mtime, size, inode) of the file; None while it does not exist."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def read(self) -> PinState:
        """The file's state (empty when there is no file yet)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return PinState()
        try:
            return PinState.from_json(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValueError(f"pins file {self.path} is not valid JSON: {exc}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def modify(self, change: Callable[[PinState], bool]) -> PinState:
        """Apply ``change`` under the lock; write only when it changed something."""
        with self._locked():
            state = self.read()
            if change(state):
                self._write(state)
            return state

    def _write(self, state: PinState) -> None:
        text = json.dumps(state.to_json(), indent=1, sort_keys=True, ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(prefix=".pins-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def render_diff(pinned: dict[str, Any] | None, new: dict[str, Any], label: str) -> str:
    """A unified diff of two definitions as indented JSON (the whole new one if never pinned)."""
    after = json.dumps(new, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    if pinned is None:
        return "\n".join(f"+{line}" for line in after)
    before = json.dumps(pinned, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    return "\n".join(
        difflib.unified_diff(
            before, after, f"{label} (pinned)", f"{label} (served now)", lineterm="", n=2
        )
    )
