"""The routing engine: which backends may serve a call, in which order, and why.

Pure logic: it reads the backends' configuration, catalogs (through ``serves_tool``), load
(``in_flight``) and circuit breakers, and returns a :class:`RoutingDecision`. It never calls a
backend. See DESIGN.md, "Routing semantics".
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mcp_router.backends.group import BackendGroup, group_backends
from mcp_router.config.models import (
    LOAD_BALANCING_MODES,
    ROUTING_STRATEGIES,
    LoadBalancing,
    RouteRule,
)
from mcp_router.resilience.circuit_breaker import CircuitBreaker, CircuitState

__all__ = [
    "Candidate",
    "LoadBalancingMode",
    "RoutableBackend",
    "RoutingDecision",
    "RoutingEngine",
]

LoadBalancingMode = LoadBalancing

_STRATEGIES = frozenset(ROUTING_STRATEGIES)
_BALANCING = frozenset(LOAD_BALANCING_MODES)
_CAPABILITY_REASON = "capability"
_GROUP_REASON = "replica group"
# Round-robin counters are kept per exposed name; names come from clients, so bound the table.
_MAX_COUNTERS = 4096


class RoutableBackend(Protocol):
    """What the engine needs to know about a backend."""

    name: str
    namespace: str  # effective namespace ("" = unprefixed)
    priority: int  # lower first
    breaker: CircuitBreaker
    in_flight: int  # calls currently running on it
    routes: Sequence[RouteRule]

    def serves_tool(self, original_name: str) -> bool:
        """True when this backend's catalog has the tool ``original_name``."""
        ...


@dataclass(slots=True)
class Candidate:
    """One backend in a routing decision.

    For a selected candidate, ``reason`` says why it was selected. For a skipped one, ``reason``
    says why it was skipped and ``selected_by`` why it had been selected.
    """

    backend: RoutableBackend
    reason: str
    selected_by: str | None = None


@dataclass(slots=True)
class RoutingDecision:
    """The ordered candidates for one call, plus the backends left out because of their circuit."""

    exposed_name: str
    original_name: str
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[Candidate] = field(default_factory=list)

    @property
    def backends(self) -> list[RoutableBackend]:
        """The candidate backends, in the order they should be tried."""
        return [candidate.backend for candidate in self.candidates]

    def describe(self) -> list[dict[str, Any]]:
        """Management view: candidates in order (position 1, 2, ...), then skipped backends.

        Each entry has ``backend``, ``reason``, ``position`` (None for skipped ones), ``skipped``,
        ``priority``, ``namespace``, ``in_flight`` and ``circuit_state``; skipped entries also
        have ``selected_by``.
        """
        out: list[dict[str, Any]] = []
        for position, candidate in enumerate(self.candidates, start=1):
            out.append(_describe_one(candidate, position))
        for candidate in self.skipped:
            entry = _describe_one(candidate, None)
            entry["selected_by"] = candidate.selected_by
            out.append(entry)
        return out


def _describe_one(candidate: Candidate, position: int | None) -> dict[str, Any]:
    backend = candidate.backend
    return {
        "backend": backend.name,
        "reason": candidate.reason,
        "position": position,
        "skipped": position is None,
        "priority": backend.priority,
        "namespace": backend.namespace,
        "in_flight": backend.in_flight,
        "circuit_state": backend.breaker.state.value,
    }


@dataclass(slots=True, frozen=True)
class _CompiledRule:
    backend: RoutableBackend
    match: Callable[[str], re.Match[str] | None]
    reason: str
    fallback_to: str | None
    fallback_reason: str


def _contains(candidates: list[Candidate], backend: RoutableBackend) -> bool:
    return any(candidate.backend is backend for candidate in candidates)


class RoutingEngine:
    """Chooses and orders the backends for a call.

    Selection, for an exposed name, its original name and its group (the namespace the exposed
    name belongs to; None or "" for unprefixed names):

    1. **Path rules.** Every route of strategy ``path`` or ``fallback`` of every backend whose glob
       (case-sensitive :func:`fnmatch.fnmatchcase` semantics) matches the exposed *or* the original
       name selects its backend (reason ``"path rule '<pattern>'"``). Path-selected backends need
       not list the tool in their catalog: the rule is explicit configuration. When any rule
       matches, the matched backends are the primaries and step 2 is not used.
    2. **Capability.** Otherwise the primaries are the backends whose namespace equals the group
       (the replica group; "" when the group is None) and whose catalog has the original name
       (reason ``"capability"``). Exception: when ``default_strategy == "path"``, a backend that
       has at least one ``path`` or ``fallback`` route receives only calls matching its routes and
       is never a capability candidate. A backend without such routes, or any backend under
       another default strategy (``capability``, ``fallback``), takes part in capability routing.
    3. **Fallback.** For each matched rule of strategy ``fallback``, its ``fallback_to`` backend
       is appended after all primaries (reason ``"fallback for '<pattern>'"``), in rule order,
       unless it is already in the list. A ``fallback_to`` naming no known backend is ignored.

    Ordering: primaries by ascending priority; among equal priority, ``least_in_flight`` puts the
    backends with fewer calls running first and rotates the ones still tied, ``round_robin``
    rotates all equal-priority backends. The rotation counter is kept per exposed name, so
    consecutive calls to one tool alternate between equal backends. Fallbacks keep their order
    after the primaries.

    Availability: a backend whose breaker does not admit a call (``breaker.allow()`` is False:
    OPEN, or HALF_OPEN with no free trial slot) moves to ``skipped`` with the reason. ``allow()``
    is only a peek: the caller must still ``acquire()`` a permit when it reaches the candidate and
    move on when that returns None. An empty candidate list is a valid decision.

    Rules and groups are compiled once per :meth:`update_backends`; call it again whenever a
    backend's routes, namespace or priority change. Catalog membership, ``in_flight`` and breaker
    state are read live on every call.
    """

    def __init__(
        self,
        backends: Sequence[RoutableBackend],
        *,
        default_strategy: str = "capability",
        load_balancing: LoadBalancingMode = "least_in_flight",
    ) -> None:
        if default_strategy not in _STRATEGIES:
            raise ValueError(
                f"unknown routing strategy {default_strategy!r}; "
                f"expected one of {sorted(_STRATEGIES)}"
            )
        if load_balancing not in _BALANCING:
            raise ValueError(
                f"unknown load balancing {load_balancing!r}; expected one of {sorted(_BALANCING)}"
            )
        self.default_strategy = default_strategy
        self.load_balancing: LoadBalancingMode = load_balancing
        self._backends: tuple[RoutableBackend, ...] = ()
        self._rules: tuple[_CompiledRule, ...] = ()
        self._groups: dict[str, BackendGroup[RoutableBackend]] = {}  # capability routing
        self._all_groups: dict[str, BackendGroup[RoutableBackend]] = {}  # resources, prompts
        self._by_name: dict[str, RoutableBackend] = {}
        self._counters: dict[str, int] = {}
        self.update_backends(backends)

    def reconfigure(
        self,
        backends: Sequence[RoutableBackend],
        *,
        default_strategy: str,
        load_balancing: LoadBalancingMode,
    ) -> None:
        """Take new routing settings and the new backend set (config reload)."""
        self.default_strategy = default_strategy
        self.load_balancing = load_balancing
        self.update_backends(backends)

    @property
    def backends(self) -> tuple[RoutableBackend, ...]:
        """The backends the engine currently routes to."""
        return self._backends

    def update_backends(self, backends: Sequence[RoutableBackend]) -> None:
        """Replace the backend set and recompile rules and replica groups."""
        rules: list[_CompiledRule] = []
        capability: list[RoutableBackend] = []
        by_name: dict[str, RoutableBackend] = {}
        for backend in backends:
            by_name.setdefault(backend.name, backend)
            has_path_rules = False
            for rule in backend.routes:
                if rule.strategy not in ("path", "fallback"):
                    continue
                has_path_rules = True
                pattern = rule.pattern
                fallback_to = rule.fallback_to if rule.strategy == "fallback" else None
                rules.append(
                    _CompiledRule(
                        backend=backend,
                        match=re.compile(fnmatch.translate(pattern)).match,
                        reason=f"path rule '{pattern}'",
                        fallback_to=fallback_to or None,
                        fallback_reason=f"fallback for '{pattern}'",
                    )
                )
            if self.default_strategy == "path" and has_path_rules:
                continue  # reachable only through its rules (or as a fallback target)
            capability.append(backend)
        self._backends = tuple(backends)
        self._rules = tuple(rules)
        self._groups = group_backends(capability)
        self._all_groups = group_backends(backends)
        self._by_name = by_name
        self._counters = {}

    def candidates(
        self, exposed_name: str, original_name: str, group: str | None, *, peek: bool = False
    ) -> RoutingDecision:
        """Return the routing decision for one call (see the class docstring for the rules).

        ``peek=True`` returns the same decision without advancing the rotation counter, so a
        preview (``router_get_routing_info``) shows exactly the order the next call will get
        and does not change it.
        """
        ordered: list[Candidate] = []
        matched_fallbacks: list[_CompiledRule] | None = None
        check_original = original_name != exposed_name
        for rule in self._rules:
            if rule.match(exposed_name) is None and (
                not check_original or rule.match(original_name) is None
            ):
                continue
            if not _contains(ordered, rule.backend):
                ordered.append(Candidate(rule.backend, rule.reason))
            if rule.fallback_to is not None:
                if matched_fallbacks is None:
                    matched_fallbacks = []
                matched_fallbacks.append(rule)

        if not ordered:
            capable = self._groups.get(group or "")
            if capable is not None:
                for backend in capable.members:
                    if backend.serves_tool(original_name):
                        ordered.append(Candidate(backend, _CAPABILITY_REASON))

        if len(ordered) > 1:
            self._order(ordered, exposed_name, peek)

        if matched_fallbacks is not None:
            for rule in matched_fallbacks:
                target = self._by_name.get(rule.fallback_to or "")
                if target is not None and not _contains(ordered, target):
                    ordered.append(Candidate(target, rule.fallback_reason))

        return _admit(RoutingDecision(exposed_name, original_name), ordered)

    def group_candidates(
        self,
        exposed: str,
        original: str,
        group: str,
        serves: Callable[[RoutableBackend], bool] | None = None,
        *,
        peek: bool = False,
    ) -> RoutingDecision:
        """The decision for a resource, prompt or completion: the members of the replica
        group that serve it, ordered and breaker-checked exactly like tool candidates (path
        rules are patterns over tool names, so they do not apply here)."""
        members = self._all_groups.get(group)
        serving = members.serving(serves) if members is not None else []
        ordered = [Candidate(b, _GROUP_REASON) for b in serving]
        if len(ordered) > 1:
            self._order(ordered, exposed, peek)
        return _admit(RoutingDecision(exposed, original), ordered)

    def _order(self, primaries: list[Candidate], exposed_name: str, peek: bool = False) -> None:
        """Sort by priority (and load), then rotate each run of tied backends in place."""
        least_loaded = self.load_balancing == "least_in_flight"
        if least_loaded:
            primaries.sort(key=lambda c: (c.backend.priority, c.backend.in_flight))
        else:
            primaries.sort(key=lambda c: c.backend.priority)

        rotation: int | None = None
        start = 0
        count = len(primaries)
        while start < count:
            first = primaries[start].backend
            end = start + 1
            while end < count:
                other = primaries[end].backend
                if other.priority != first.priority or (
                    least_loaded and other.in_flight != first.in_flight
                ):
                    break
                end += 1
            size = end - start
            if size > 1:
                if rotation is None:
                    rotation = (
                        self._counters.get(exposed_name, 0)
                        if peek
                        else self._next_rotation(exposed_name)
                    )
                shift = rotation % size
                if shift:
                    primaries[start:end] = (
                        primaries[start + shift : end] + primaries[start : start + shift]
                    )
            start = end

    def _next_rotation(self, exposed_name: str) -> int:
        counters = self._counters
        value = counters.get(exposed_name, 0)
        if value == 0 and len(counters) >= _MAX_COUNTERS:
            counters.clear()
        counters[exposed_name] = value + 1
        return value


def _admit(decision: RoutingDecision, ordered: list[Candidate]) -> RoutingDecision:
    """Split ordered candidates into those whose breaker admits a call and those skipped."""
    for candidate in ordered:
        breaker = candidate.backend.breaker
        if breaker.allow():
            decision.candidates.append(candidate)
        else:
            decision.skipped.append(
                Candidate(candidate.backend, _skip_reason(breaker), candidate.reason)
            )
    return decision


def _skip_reason(breaker: CircuitBreaker) -> str:
    if breaker.state is CircuitState.HALF_OPEN:
        return "circuit half-open, no free trial slot"
    return f"circuit open, retry in {breaker.retry_in():.1f}s"
