"""Hot reload of the configuration file: on change (polled) and on SIGHUP.

A reload loads the file exactly as start-up does (``${VAR}`` expansion, validation, ``MCP_*``
overrides). An invalid file is rejected with one log line that says why, and the running
configuration keeps serving. A valid one is applied as a diff:

- backends added are started, removed ones stopped, changed ones (any key differs) restarted;
  the others keep their sessions, breakers and in-flight calls;
- a new or changed backend is started (and given up to its ``connect_timeout_seconds`` to
  connect) before the index switches to it, so a changed backend's tools do not blink out;
- routing settings are applied in place (strategy, balancing, retry, timeouts, names, rate
  limit); ``tool_discovery`` / ``pinned_tools`` need a restart;
- the index is rebuilt once, and connected clients get ``notifications/*/list_changed``.

Process settings (``MCP_*`` environment) are not reloaded, except that the bearer-token file
(``MCP_AUTH_TOKEN_FILE``) is re-read when it changes, for token rotation.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio

from mcp_router.config import ConfigError, load_effective_config
from mcp_router.config.models import DEFAULT_SOURCE, BackendConfig, RouterConfig
from mcp_router.resilience.retry import RetryPolicy
from mcp_router.settings import RouterSettings

logger = logging.getLogger("mcp_router.reload")

__all__ = ["ConfigDiff", "ConfigReloader", "ReloadTarget", "diff_configs"]


@dataclass
class ConfigDiff:
    """What differs between the running configuration and a newly loaded one."""

    added: list[BackendConfig] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[BackendConfig] = field(default_factory=list)
    routing_changed: bool = False
    order_changed: bool = False
    policies_changed: bool = False  # governance reads the new policies from router.config

    @property
    def empty(self) -> bool:
        """Nothing to apply."""
        return not (
            self.added
            or self.removed
            or self.changed
            or self.routing_changed
            or self.order_changed
            or self.policies_changed
        )

    def describe(self) -> str:
        """One-line summary for the log."""
        parts = []
        if self.added:
            parts.append("added " + ", ".join(b.name for b in self.added))
        if self.removed:
            parts.append("removed " + ", ".join(self.removed))
        if self.changed:
            parts.append("restarted " + ", ".join(b.name for b in self.changed))
        if self.routing_changed:
            parts.append("routing settings updated")
        if self.policies_changed:
            parts.append("policies updated")
        if self.order_changed and not parts:
            parts.append("backend order updated")
        return "; ".join(parts) or "no change"


def _enabled(config: RouterConfig) -> dict[str, BackendConfig]:
    return {b.name: b for b in config.backends if b.enabled}


def diff_configs(old: RouterConfig, new: RouterConfig) -> ConfigDiff:
    """Compare two configurations backend by backend (disabled backends count as absent)."""
    before, after = _enabled(old), _enabled(new)
    diff = ConfigDiff()
    for name, bc in after.items():
        if name not in before:
            diff.added.append(bc)
        elif bc.model_dump() != before[name].model_dump():
            diff.changed.append(bc)
    diff.removed = [name for name in before if name not in after]
    diff.routing_changed = old.routing.model_dump() != new.routing.model_dump()
    diff.policies_changed = old.policies != new.policies
    kept = [n for n in before if n in after]
    diff.order_changed = kept != [n for n in after if n in before]
    return diff


def _file_state(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _file_hash(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class ReloadTarget(Protocol):
    """What the reloader drives: the running router, which hands each of its objects its part
    of the new configuration (`Router.apply_config`)."""

    config: RouterConfig
    settings: RouterSettings

    async def apply_config(self, new: RouterConfig, diff: ConfigDiff) -> None:
        """Apply a validated configuration that differs from the running one by ``diff``."""

    def reload_token_file(self) -> None:
        """Re-read the bearer-token file if it changed (token rotation)."""

    def count_reload(self, outcome: str) -> None:
        """Record a reload's outcome (applied, unchanged, rejected, failed)."""


class ConfigReloader:
    """Watches the router's config file (and token file) and applies changes to the router.

    It loads and validates the file, computes the diff, and hands both to the target; it
    never touches the target's objects itself."""

    def __init__(self, router: ReloadTarget) -> None:
        self.router = router
        settings = router.settings
        source = router.config.source
        self.path: Path | None = None if source == DEFAULT_SOURCE else Path(source)
        self.poll_interval = settings.config_poll_interval
        self.watch = settings.watch_config
        self._lock = anyio.Lock()
        self._state = _file_state(self.path) if self.path else None
        self._hash = _file_hash(self.path) if self.path else None
        self._missing_logged = False

    # ------------------------------------------------------------------ triggers

    async def run(self) -> None:
        """Poll for changes and listen for SIGHUP until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._sighup_loop)
            if self.watch:
                if self.path is not None:
                    logger.info(
                        "watching %s for changes (every %gs; SIGHUP reloads too)",
                        self.path,
                        self.poll_interval,
                    )
                await self._poll_loop()

    async def _sighup_loop(self) -> None:
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is None:  # no SIGHUP on this platform (Windows): polling still works
            logger.debug("SIGHUP reload unavailable on this platform")
            return
        with contextlib.ExitStack() as stack:
            try:
                signals = stack.enter_context(anyio.open_signal_receiver(sighup))
            except (RuntimeError, ValueError) as exc:
                # Not the main thread (an embedded router): polling still works.
                logger.debug("SIGHUP reload unavailable: %s", exc)
                return
            async for _ in signals:
                logger.info("SIGHUP received: reloading")
                self._reload_token_file()
                await self.reload("SIGHUP", force=True)

    async def _poll_loop(self) -> None:
        while True:
            await anyio.sleep(self.poll_interval)
            self._reload_token_file()
            if self.path is None:
                continue
            state = _file_state(self.path)
            if state is None:
                if not self._missing_logged:
                    logger.warning(
                        "config file %s is missing: still serving the current config", self.path
                    )
                    self._missing_logged = True
                continue
            self._missing_logged = False
            if state == self._state:
                continue
            self._state = state
            if _file_hash(self.path) == self._hash:
                continue  # touched, same content
            await self.reload("file changed")

    def _reload_token_file(self) -> None:
        self.router.reload_token_file()

    # ------------------------------------------------------------------ reload

    async def reload(self, reason: str, *, force: bool = False) -> str:
        """Load the file and apply it; returns ``applied``, ``unchanged`` or ``rejected``."""
        async with self._lock:
            try:
                outcome = await self._reload(reason, force)
            except Exception:
                # Never let a reload take the backends' task group (and the router) down.
                logger.exception("config reload (%s) failed while being applied", reason)
                outcome = "failed"
        self.router.count_reload(outcome)
        return outcome

    async def _reload(self, reason: str, force: bool) -> str:
        router = self.router
        if self.path is None:
            if force:
                logger.info("no config file to reload (running the built-in default config)")
            return "unchanged"
        self._hash = _file_hash(self.path)
        self._state = _file_state(self.path)
        try:
            new = load_effective_config(router.settings, explicit_path=self.path)
            RetryPolicy.from_config(new.routing.retry)  # reject what cannot be applied
        except ConfigError as exc:
            logger.error(
                "config reload (%s) rejected, still serving the previous config:\n%s", reason, exc
            )
            return "rejected"
        except (ValueError, OSError) as exc:
            logger.error(
                "config reload (%s) rejected, still serving the previous config: %s: %s",
                reason,
                self.path,
                exc,
            )
            return "rejected"
        diff = diff_configs(router.config, new)
        if diff.empty:
            logger.info("config reload (%s): %s unchanged", reason, self.path)
            return "unchanged"
        await router.apply_config(new, diff)
        logger.info("config reloaded (%s) from %s: %s", reason, self.path, diff.describe())
        return "applied"
