"""Replica groups: the backends that share a namespace, as one object.

The config's ``namespace`` is the group key, one to one: backends with the same namespace
(``""`` for the unprefixed ones) expose one set of names and spread calls between them. The
index (which names exist), the routing engine (which members serve a call, in which order) and
the protocol relay (subscriptions, completions) all take groups from `group_backends`, so
membership is computed in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class _Named(Protocol):
    name: str
    namespace: str


B = TypeVar("B", bound=_Named)


@dataclass(frozen=True, slots=True)
class BackendGroup(Generic[B]):
    """One replica group: its namespace and its members in config order."""

    namespace: str
    members: tuple[B, ...]

    def serving(self, serves: Callable[[B], bool] | None) -> list[B]:
        """The members that serve something (all of them when none claims it: a stale
        catalog must not make a group unreachable)."""
        if serves is None:
            return list(self.members)
        return [b for b in self.members if serves(b)] or list(self.members)


def group_backends(backends: Iterable[B]) -> dict[str, BackendGroup[B]]:
    """Group backends by namespace, keeping config order within and between groups."""
    members: dict[str, list[B]] = {}
    for backend in backends:
        members.setdefault(backend.namespace, []).append(backend)
    return {ns: BackendGroup(ns, tuple(group)) for ns, group in members.items()}
