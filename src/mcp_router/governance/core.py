"""The governance facade: one object the gateway calls at each place a name is seen or used.

- :meth:`Governance.admit` — before a routed request (tools/call, resources/read,
  prompts/get, whichever entry it came through): ``None``, or the refusal message (denied by
  a policy rule, or quarantined by pinning). Refusals are written to the audit trail.
- :meth:`Governance.check` — the same for protocol handlers (completions, subscriptions):
  raises :class:`PolicyDenied`, a JSON-RPC error.
- :meth:`Governance.visible` — whether the current identity may see a name (lists, search).
- :meth:`Governance.observe` — a Forwarder observer: the audit line of a routed request.
- :meth:`Governance.guard_catalog` — on every index rebuild, before the new index is served:
  compares every exposed definition with its pin, records changes, updates the quarantine.
- :meth:`Governance.run` — polls the pin store (approvals by ``mcp-router pins approve``)
  and the config (policy reloads) and tells clients when what they may see changed.

Pinning modes: ``off`` (nothing), ``warn`` (a change is logged, counted in
``mcp_router_pin_changes_total``, shown on ``/status`` and in ``pins list``; the new
definition is served), ``enforce`` (also quarantined: left out of lists, and a call, read of
a prompt or completion gets an error saying it changed and awaits approval).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import mcp_types as types
from fastmcp.resources.template import match_uri_template
from mcp.shared.exceptions import MCPError
from prometheus_client import CollectorRegistry, Counter

from mcp_router.config.models import PinningMode, RouterConfig
from mcp_router.governance.audit import METHODS, AuditLog
from mcp_router.governance.identity import Identity, current_identity, current_session
from mcp_router.governance.pins import (
    FilePinStore,
    PinKind,
    PinState,
    PinStore,
    canonical_definition,
    default_pins_path,
    definition_hash,
    now_iso,
    pin_key,
)
from mcp_router.governance.policy import Policy
from mcp_router.settings import RouterSettings

__all__ = ["Governance", "PolicyDenied"]

logger = logging.getLogger("mcp_router.governance")

_NOUNS = {
    "tools/call": "tool",
    "resources/read": "resource",
    "prompts/get": "prompt",
    "completion/complete": "completion of",
    "resources/subscribe": "subscription to",
}
_LIST_KIND: dict[PinKind, str] = {"tool": "tools", "prompt": "prompts", "template": "resources"}
# The argument names of the routed request being served, for its audit line.
_argument_keys: ContextVar[tuple[str, ...]] = ContextVar("mcp_router_argument_keys", default=())

Notify = Callable[[set[str]], Awaitable[None]]


class PolicyDenied(MCPError):
    """A request refused by a policy or by pinning (a JSON-RPC invalid-params error)."""

    def __init__(self, message: str) -> None:
        super().__init__(types.INVALID_PARAMS, message)


class _BackendLike(Protocol):
    name: str
    namespace: str
    config: Any
    catalog: Any


@dataclass(frozen=True, slots=True)
class _Seen:
    """One exposed definition as a backend serves it now."""

    kind: PinKind
    backend: str
    name: str
    exposed: str
    mode: PinningMode
    hash: str
    definition: dict[str, Any]

    def record(self, **extra: Any) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "kind": self.kind,
            "name": self.name,
            "exposed": self.exposed,
            "hash": self.hash,
            "definition": self.definition,
            **extra,
        }


class Governance:
    """Policies, audit trail and pinned definitions for one router."""

    def __init__(
        self,
        settings: RouterSettings,
        config: Callable[[], RouterConfig],
        *,
        registry: CollectorRegistry | None = None,
        store: PinStore | None = None,
    ) -> None:
        self.settings = settings
        self._config_source = config
        self._config: RouterConfig | None = None
        self.policy: Policy | None = None
        self._policies_changed = False
        self.audit = AuditLog(settings.audit_log) if settings.audit_log else None
        self.store: PinStore = store or FilePinStore(settings.pins_file or default_pins_path())
        self.pins = PinState()
        self._stamp: object = None
        self._seen: dict[str, _Seen] = {}
        self._hashes: dict[str, tuple[Any, str, dict[str, Any]]] = {}  # key -> (obj, hash, def)
        self._reported: set[tuple[str, str]] = set()  # (key, hash) changes already counted
        self._quarantine: dict[str, tuple[PinKind, str]] = {}  # exposed -> (kind, why)
        self.notify: Notify | None = None
        self._stop = anyio.Event()
        self.pin_changes = Counter(
            "mcp_router_pin_changes_total",
            "Definitions a backend changed after they were pinned (or new ones held for "
            "approval), by backend, kind and pinning mode.",
            ["backend", "kind", "mode"],
            registry=registry,
        )
        self.denied = Counter(
            "mcp_router_denied_total",
            "Requests refused by a policy or by pinning, by method.",
            ["method"],
            registry=registry,
        )
        self._refresh_config()
        if self._pinning_used():
            self._load_pins()

    # ------------------------------------------------------------------ configuration

    def _refresh_config(self) -> RouterConfig:
        config = self._config_source()
        if config is not self._config:
            first = self._config is None
            before = None if self._config is None else self._config.policies
            self._config = config
            if first or config.policies != before:
                self.policy = Policy(config.policies) if config.policies is not None else None
                self._policies_changed = not first
        return config

    def _mode(self, backend: _BackendLike) -> PinningMode:
        own = getattr(backend.config, "pinning", None)
        return own or self._refresh_config().routing.pinning

    def _pinning_used(self) -> bool:
        config = self._refresh_config()
        return config.routing.pinning != "off" or any(
            b.pinning not in (None, "off") for b in config.backends
        )

    def _load_pins(self) -> None:
        stamp = self.store.stamp()
        try:
            self.pins = self.store.read()
        except (OSError, ValueError) as exc:
            logger.error("pins not readable (%s): keeping the previous pins", exc)
        self._stamp = stamp

    # ------------------------------------------------------------------ who and what

    def identity(self) -> Identity:
        """The identity of the request being served."""
        return current_identity(self.settings.jwt_groups_claim)

    @property
    def filtering(self) -> bool:
        """Whether lists may differ from the full catalog (a policy, or a quarantine)."""
        self._refresh_config()
        return self.policy is not None or bool(self._quarantine)

    def visible(self, name: str, identity: Identity | None = None) -> bool:
        """Whether the current identity may see ``name`` (a denied name looks unknown)."""
        if name in self._quarantine:
            return False
        self._refresh_config()
        if self.policy is None:
            return True
        return self.policy.allows(identity or self.identity(), name)

    def filter(self, items: Sequence[Any], name: Callable[[Any], str]) -> Sequence[Any]:
        """The items of a list the current identity may see."""
        if not self.filtering:  # refreshes the policy too
            return items
        held = self._quarantine
        if self.policy is None:
            return [item for item in items if name(item) not in held]
        allows = self.policy.checker(self.identity())
        return [item for item in items if (key := name(item)) not in held and allows(key)]

    def refusal(self, identity: Identity, method: str, name: str) -> str | None:
        """Why ``identity`` may not use ``name`` now, or None."""
        quarantined = self._quarantine.get(name)
        if quarantined is None and method == "resources/read":
            quarantined = self._quarantined_template_of(name)
        if quarantined is not None:
            return quarantined[1]
        if self.policy is None:
            return None
        decision = self.policy.decide(identity, name)
        if decision.allowed:
            return None
        noun = _NOUNS.get(method, method)
        return f"access denied: '{identity}' may not use {noun} '{name}' ({decision.explain()})"

    def _quarantined_template_of(self, uri: str) -> tuple[PinKind, str] | None:
        """The quarantine of the template ``uri`` is an instance of, if any (few are held)."""
        for name, held in self._quarantine.items():
            if held[0] == "template" and match_uri_template(uri, name) is not None:
                return held
        return None

    # ------------------------------------------------------------------ requests

    def admit(self, kind: str, exposed: str, arguments: Mapping[str, Any] | None) -> str | None:
        """Before a routed request: None to go on, or the refusal message (audited)."""
        if self.audit is not None:
            _argument_keys.set(tuple(arguments) if arguments else ())
        self._refresh_config()
        if self.policy is None and not self._quarantine:
            return None
        method = METHODS.get(kind, kind)
        identity = self.identity()
        refused = self.refusal(identity, method, exposed)
        if refused is not None:
            self.record_denial(identity, method, exposed, refused, arguments)
        return refused

    def check(self, method: str, name: str) -> None:
        """For protocol handlers: raise :class:`PolicyDenied` when ``name`` is refused."""
        self._refresh_config()
        if self.policy is None and not self._quarantine:
            return
        identity = self.identity()
        refused = self.refusal(identity, method, name)
        if refused is not None:
            self.record_denial(identity, method, name, refused, None)
            raise PolicyDenied(f"mcp-router: {refused}")

    def record_denial(
        self,
        identity: Identity,
        method: str,
        name: str,
        reason: str,
        arguments: Mapping[str, Any] | None,
    ) -> None:
        """Count, log and audit one refused request."""
        self.denied.labels(method).inc()
        logger.info("%s '%s' refused for '%s': %s", method, name, identity, reason)
        if self.audit is not None:
            self.audit.write(
                identity=identity.name,
                session=current_session(),
                method=method,
                name=name,
                backend=None,
                outcome="denied",
                duration_ms=0.0,
                argument_keys=tuple(arguments) if arguments else (),
                reason=reason,
            )

    def observe(self, record: Any) -> None:
        """Forwarder observer: the audit line of one finished routed request."""
        if self.audit is None:
            return
        self.audit.write(
            identity=self.identity().name,
            session=current_session(),
            method=METHODS.get(record.kind, record.kind),
            name=record.exposed,
            backend=record.backend,
            outcome=record.outcome,
            duration_ms=record.duration_ms,
            argument_keys=_argument_keys.get(),
        )

    # ------------------------------------------------------------------ pinning

    def guard_catalog(self, backends: Iterable[_BackendLike], index: Any) -> set[str]:
        """Check every exposed definition of ``index`` against its pin (before it is served).

        Returns the list kinds (``tools``, ``prompts``, ``resources``) whose quarantine
        changed, so clients can be told their lists changed.
        """
        if not self._pinning_used():
            return self._set_quarantine({})
        seen = self._observe(list(backends), index)
        self._seen = seen
        approve_new = self._refresh_config().routing.pinning_new == "approve"
        if _reconcile(self.pins, seen, approve_new, dry=True):
            try:
                self.pins = self.store.modify(lambda s: _reconcile(s, seen, approve_new))
                self._stamp = self.store.stamp()
            except (OSError, ValueError) as exc:
                logger.error("pins not stored in %s: %s", self.store.describe(), exc)
                _reconcile(self.pins, seen, approve_new)  # enforce in memory all the same
        self._report(seen)
        return self._set_quarantine(self._quarantined(seen))

    def _observe(self, backends: list[_BackendLike], index: Any) -> dict[str, _Seen]:
        groups: dict[str, list[tuple[_BackendLike, PinningMode]]] = {}
        for backend in backends:
            mode = self._mode(backend)
            if mode != "off":
                groups.setdefault(backend.namespace, []).append((backend, mode))
        seen: dict[str, _Seen] = {}

        def add(kind: PinKind, exposed: str, group: str, original: str) -> None:
            for backend, mode in groups.get(group, ()):
                catalog = backend.catalog
                if kind == "tool":
                    component = catalog.tools.get(original)
                elif kind == "prompt":
                    component = catalog.prompts.get(original)
                else:
                    component = next(
                        (t for t in catalog.templates if t.uri_template == original), None
                    )
                if component is None:
                    continue
                key = pin_key(backend.name, kind, original)
                cached = self._hashes.get(key)
                if cached is None or cached[0] is not component:
                    definition = canonical_definition(kind, component)
                    cached = (component, definition_hash(definition), definition)
                    self._hashes[key] = cached
                seen[key] = _Seen(kind, backend.name, original, exposed, mode, cached[1], cached[2])

        for exposed, tool in index.tools.items():
            add("tool", exposed, tool.group, tool.original_name)
        for exposed, prompt in index.prompts.items():
            add("prompt", exposed, prompt.group, prompt.original_name)
        for exposed, template in index.templates.items():
            add("template", exposed, template.group, template.original_template)
        return seen

    def _report(self, seen: dict[str, _Seen]) -> None:
        for key, record in self.pins.pending.items():
            item = seen.get(key)
            if item is None or item.hash != record.get("hash"):
                continue
            if (key, item.hash) in self._reported:
                continue
            self._reported.add((key, item.hash))
            self.pin_changes.labels(item.backend, item.kind, item.mode).inc()
            what = "a new" if record.get("new") else "a changed"
            action = (
                f"quarantined until `mcp-router pins approve {item.exposed}`"
                if item.mode == "enforce"
                else "served as is (pinning: warn)"
            )
            logger.warning(
                "pinning: backend '%s' serves %s definition of %s '%s' (exposed as '%s'): "
                "%s; `mcp-router pins list` shows the difference",
                item.backend,
                what,
                item.kind,
                item.name,
                item.exposed,
                action,
            )

    def _quarantined(self, seen: dict[str, _Seen]) -> dict[str, tuple[PinKind, str]]:
        quarantine: dict[str, tuple[PinKind, str]] = {}
        for key, record in self.pins.pending.items():
            item = seen.get(key)
            if item is None or item.mode != "enforce" or item.hash != record.get("hash"):
                continue
            change = "is new" if record.get("new") else "changed its definition"
            quarantine[item.exposed] = (
                item.kind,
                f"{item.kind} '{item.exposed}' {change} on backend '{item.backend}' and awaits "
                f"approval (mcp-router pins list; mcp-router pins approve {item.exposed})",
            )
        return quarantine

    def _set_quarantine(self, quarantine: dict[str, tuple[PinKind, str]]) -> set[str]:
        old = self._quarantine
        if quarantine == old:
            return set()
        self._quarantine = quarantine
        for name in old.keys() - quarantine.keys():
            logger.info("pinning: '%s' approved (or reverted): served again", name)
        changed = {name for name in old.keys() ^ quarantine.keys()}
        return {_LIST_KIND[(quarantine.get(n) or old[n])[0]] for n in changed}

    # ------------------------------------------------------------------ background

    async def run(self, interval: float | None = None) -> None:
        """Pick up approvals (pin store changes) and policy reloads until :meth:`stop`."""
        interval = interval or self.settings.config_poll_interval
        self._stop = anyio.Event()
        while not self._stop.is_set():
            with anyio.move_on_after(interval):
                await self._stop.wait()
            if self._stop.is_set():
                return
            try:
                await self.poll()
            except Exception:  # never take the router down over a pins file
                logger.exception("governance poll failed")

    async def poll(self) -> set[str]:
        """One round of :meth:`run`: returns (and announces) the list kinds that changed."""
        kinds: set[str] = set()
        self._refresh_config()
        if self._policies_changed:
            self._policies_changed = False
            kinds |= {"tools", "prompts", "resources"}
            logger.info("policies reloaded: %s", "on" if self.policy else "off")
        if self._pinning_used() and self.store.stamp() != self._stamp:
            self._load_pins()
            kinds |= self._set_quarantine(self._quarantined(self._seen))
        if kinds and self.notify is not None:
            await self.notify(kinds)
        return kinds

    def stop(self) -> None:
        """End :meth:`run`."""
        self._stop.set()

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """What ``/status.json`` shows: policies on/off, pins, pending changes (no secrets)."""
        config = self._refresh_config()
        pending = [
            {
                "exposed": r.get("exposed"),
                "backend": r.get("backend"),
                "kind": r.get("kind"),
                "name": r.get("name"),
                "new": bool(r.get("new")),
                "seen_at": r.get("seen_at"),
                "quarantined": r.get("exposed") in self._quarantine,
            }
            for r in self.pins.pending.values()
        ]
        return {
            "policies": self.policy is not None,
            "audit_log": self.audit is not None,
            "pinning": config.routing.pinning,
            "pins_store": self.store.describe() if self._pinning_used() else None,
            "pinned": len(self.pins.pins),
            "pending": pending,
        }


def _reconcile(
    state: PinState, seen: dict[str, _Seen], approve_new: bool, dry: bool = False
) -> bool:
    """Bring ``state`` up to date with what is served; True when it changed (or would)."""
    changed = False
    for key, item in seen.items():
        pinned = state.pins.get(key)
        pending = state.pending.get(key)
        if pinned is None:
            if item.mode == "enforce" and approve_new:
                if pending is not None and pending.get("hash") == item.hash:
                    continue
                if dry:
                    return True
                state.pending[key] = item.record(new=True, seen_at=now_iso())
            else:
                if dry:
                    return True
                state.pins[key] = item.record(at=now_iso())
                state.pending.pop(key, None)
            changed = True
        elif pinned.get("hash") == item.hash:
            if pending is not None or pinned.get("exposed") != item.exposed:
                if dry:
                    return True
                state.pending.pop(key, None)  # the backend went back to the pinned definition
                pinned["exposed"] = item.exposed
                changed = True
        elif pending is None or pending.get("hash") != item.hash:
            if dry:
                return True
            state.pending[key] = item.record(seen_at=now_iso())
            changed = True
    return changed
