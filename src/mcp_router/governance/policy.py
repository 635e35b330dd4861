"""Policies: which identity may see and use which exposed names.

A rule applies to an identity when one of its ``identities`` is the identity's name, one of
its groups (``group:NAME``) or ``"*"``. It decides for a name when the name matches one of
its ``deny`` globs (denied; checked first) or ``allow`` globs (allowed). Rules are tried in
config order; the first that decides wins; when none does, ``default`` decides.

Names are exposed tool and prompt names, resource URIs and resource URI templates, so one
glob set covers lists, calls, reads, prompts, completions and subscriptions alike.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass

from mcp_router.config.models import PoliciesConfig, PolicyRule
from mcp_router.governance.identity import Identity

__all__ = ["Decision", "Policy"]

# Decisions are remembered per identity (a list asks the same names again and again); the
# memo is reset past these bounds, so unknown names sent by a client cannot grow it forever.
_MEMO_IDENTITIES = 1_000
_MEMO_NAMES = 20_000


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one (identity, name): allowed or not, and which rule said so."""

    allowed: bool
    rule: str  # "policies.rules[0] (\"analysts\")" or "policies.default"
    glob: str | None = None  # the glob that matched (None for the default)

    def explain(self) -> str:
        """Why, for an error message (names only this rule, never another identity's)."""
        if self.glob is None:
            return f"{self.rule} is {'allow' if self.allowed else 'deny'}"
        verb = "allows" if self.allowed else "denies"
        return f'{self.rule} {verb} "{self.glob}"'


def _compile(globs: list[str]) -> re.Pattern[str] | None:
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))


class _Rule:
    def __init__(self, index: int, rule: PolicyRule) -> None:
        self.label = f"policies.rules[{index}]" + (f' ("{rule.name}")' if rule.name else "")
        self.anyone = "*" in rule.identities
        self.names = frozenset(i for i in rule.identities if not i.startswith("group:"))
        self.groups = frozenset(i[6:] for i in rule.identities if i.startswith("group:"))
        self.allow_globs, self.deny_globs = list(rule.allow), list(rule.deny)
        self.allow, self.deny = _compile(rule.allow), _compile(rule.deny)

    def applies_to(self, identity: Identity) -> bool:
        return self.anyone or identity.name in self.names or bool(self.groups & identity.groups)

    def decide(self, name: str) -> Decision | None:
        if self.deny is not None and self.deny.match(name):
            return Decision(False, self.label, _first(self.deny_globs, name))
        if self.allow is not None and self.allow.match(name):
            return Decision(True, self.label, _first(self.allow_globs, name))
        return None


def _first(globs: list[str], name: str) -> str:
    return next(g for g in globs if fnmatch.fnmatchcase(name, g))


class Policy:
    """A compiled ``policies:`` section; decisions are memoised per identity and name."""

    def __init__(self, config: PoliciesConfig) -> None:
        self.config = config
        self._rules = [_Rule(i, rule) for i, rule in enumerate(config.rules)]
        self._default = Decision(config.default == "allow", "policies.default")
        self._memo: dict[Identity, dict[str, Decision]] = {}

    def decide(self, identity: Identity, name: str) -> Decision:
        """Whether ``identity`` may see and use ``name``, and the rule that decided."""
        memo = self._memo_for(identity)
        decision = memo.get(name)
        if decision is not None:
            return decision
        decision = self._default
        for rule in self._rules:
            if rule.applies_to(identity):
                found = rule.decide(name)
                if found is not None:
                    decision = found
                    break
        if len(memo) >= _MEMO_NAMES:
            memo.clear()
        memo[name] = decision
        return decision

    def _memo_for(self, identity: Identity) -> dict[str, Decision]:
        memo = self._memo.get(identity)
        if memo is None:
            if len(self._memo) >= _MEMO_IDENTITIES:
                self._memo.clear()
            memo = self._memo[identity] = {}
        return memo

    def checker(self, identity: Identity) -> Callable[[str], bool]:
        """``allows`` bound to one identity (a list checks thousands of names for one client)."""
        memo = self._memo_for(identity)

        def allows(name: str) -> bool:
            decision = memo.get(name)
            return (decision or self.decide(identity, name)).allowed

        return allows

    def allows(self, identity: Identity, name: str) -> bool:
        """Shorthand for ``decide(identity, name).allowed``."""
        return self.decide(identity, name).allowed
