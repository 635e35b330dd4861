"""Unit tests for the RoutingEngine (fake backends, fake clock)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from mcp_router.config.models import RouteRule
from mcp_router.resilience import CircuitBreaker, CircuitState
from mcp_router.routing import RoutingDecision, RoutingEngine


class FakeClock:
    """Monotonic time that only moves when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeBackend:
    """Implements the RoutableBackend protocol."""

    name: str
    namespace: str
    tools: frozenset[str] = frozenset()
    priority: int = 100
    in_flight: int = 0
    routes: Sequence[RouteRule] = ()
    clock: FakeClock = field(default_factory=FakeClock)
    breaker: CircuitBreaker = field(init=False)

    def __post_init__(self) -> None:
        self.breaker = CircuitBreaker(
            self.name,
            failure_threshold=1,
            timeout_seconds=30,
            half_open_attempts=1,
            clock=self.clock,
            wall_clock=self.clock,
        )

    def serves_tool(self, original_name: str) -> bool:
        return original_name in self.tools


def backend(
    name: str,
    namespace: str | None = None,
    tools: Sequence[str] = (),
    *,
    priority: int = 100,
    in_flight: int = 0,
    routes: Sequence[RouteRule] = (),
) -> FakeBackend:
    return FakeBackend(
        name=name,
        namespace=name if namespace is None else namespace,
        tools=frozenset(tools),
        priority=priority,
        in_flight=in_flight,
        routes=tuple(routes),
    )


def names(decision: RoutingDecision) -> list[str]:
    return [c.backend.name for c in decision.candidates]


def trip(target: FakeBackend) -> None:
    permit = target.breaker.acquire()
    assert permit is not None
    permit.failure("down")
    assert target.breaker.state is CircuitState.OPEN


def test_capability_in_replica_group() -> None:
    db1 = backend("db1", "db", ["query"], priority=10)
    db2 = backend("db2", "db", ["query"], priority=20)
    db3 = backend("db3", "db", ["other"])
    files = backend("files", "files", ["query"])
    engine = RoutingEngine([files, db3, db2, db1])
    decision = engine.candidates("db_query", "query", "db")
    assert names(decision) == ["db1", "db2"]
    assert {c.reason for c in decision.candidates} == {"capability"}
    assert decision.skipped == []
    assert decision.exposed_name == "db_query"
    assert decision.original_name == "query"


def test_capability_unprefixed_group() -> None:
    plain = backend("plain", "", ["echo"])
    other = backend("other", "", ["nope"])
    prefixed = backend("pref", "pref", ["echo"])
    engine = RoutingEngine([prefixed, other, plain])
    assert names(engine.candidates("echo", "echo", None)) == ["plain"]
    assert names(engine.candidates("echo", "echo", "")) == ["plain"]


def test_unknown_tool_gives_empty_candidate_set() -> None:
    engine = RoutingEngine([backend("db", tools=["query"])])
    decision = engine.candidates("db_missing", "missing", "db")
    assert decision.candidates == []
    assert decision.skipped == []
    assert decision.describe() == []


def test_no_backends_is_valid() -> None:
    engine = RoutingEngine([])
    assert engine.candidates("x", "x", None).candidates == []


def test_path_rule_matches_exposed_name() -> None:
    users = backend("users", "users", routes=[RouteRule(pattern="db_*_user")])
    db = backend("db", tools=["get_user"])
    engine = RoutingEngine([db, users])
    decision = engine.candidates("db_get_user", "get_user", "db")
    assert names(decision) == ["users"]
    assert decision.candidates[0].reason == "path rule 'db_*_user'"


def test_path_rule_matches_original_name() -> None:
    users = backend("users", "users", routes=[RouteRule(pattern="get_*")])
    db = backend("db", tools=["get_user"])
    engine = RoutingEngine([db, users])
    assert names(engine.candidates("db_get_user", "get_user", "db")) == ["users"]


def test_path_rule_is_case_sensitive() -> None:
    users = backend("users", "users", routes=[RouteRule(pattern="GET_*")])
    db = backend("db", tools=["get_user"])
    engine = RoutingEngine([db, users])
    assert names(engine.candidates("db_get_user", "get_user", "db")) == ["db"]


def test_capability_rule_is_not_a_path_rule() -> None:
    other = backend("other", routes=[RouteRule(pattern="*", strategy="capability")])
    db = backend("db", tools=["query"])
    engine = RoutingEngine([other, db])
    assert names(engine.candidates("db_query", "query", "db")) == ["db"]


def test_multiple_path_rules_ordered_by_priority() -> None:
    a = backend("a", routes=[RouteRule(pattern="*_user")], priority=50)
    b = backend("b", routes=[RouteRule(pattern="get_*"), RouteRule(pattern="*user")], priority=5)
    engine = RoutingEngine([a, b])
    decision = engine.candidates("x_get_user", "get_user", "x")
    assert names(decision) == ["b", "a"]
    assert decision.candidates[0].reason == "path rule 'get_*'"


def test_fallback_appended_after_primary() -> None:
    analytics = backend(
        "analytics",
        routes=[RouteRule(pattern="analyze_*", strategy="fallback", fallback_to="secondary")],
        priority=50,
    )
    secondary = backend("secondary", priority=1)
    engine = RoutingEngine([secondary, analytics])
    decision = engine.candidates("analytics_analyze_sales", "analyze_sales", "analytics")
    assert names(decision) == ["analytics", "secondary"]
    assert [c.reason for c in decision.candidates] == [
        "path rule 'analyze_*'",
        "fallback for 'analyze_*'",
    ]


def test_fallback_not_duplicated_when_already_primary() -> None:
    a = backend("a", routes=[RouteRule(pattern="t*", strategy="fallback", fallback_to="b")])
    b = backend("b", routes=[RouteRule(pattern="t*")])
    engine = RoutingEngine([a, b])
    decision = engine.candidates("tool", "tool", None)
    assert sorted(names(decision)) == ["a", "b"]
    assert len(decision.candidates) == 2


def test_fallback_to_unknown_backend_is_ignored() -> None:
    a = backend("a", routes=[RouteRule(pattern="t*", strategy="fallback", fallback_to="ghost")])
    engine = RoutingEngine([a])
    assert names(engine.candidates("tool", "tool", None)) == ["a"]


def test_fallback_skipped_when_its_circuit_is_open() -> None:
    a = backend("a", routes=[RouteRule(pattern="t*", strategy="fallback", fallback_to="b")])
    b = backend("b")
    trip(b)
    engine = RoutingEngine([a, b])
    decision = engine.candidates("tool", "tool", None)
    assert names(decision) == ["a"]
    assert [c.backend.name for c in decision.skipped] == ["b"]
    assert decision.skipped[0].selected_by == "fallback for 't*'"


def test_priority_order() -> None:
    low = backend("low", "g", ["t"], priority=1)
    mid = backend("mid", "g", ["t"], priority=5)
    high = backend("high", "g", ["t"], priority=9)
    engine = RoutingEngine([high, low, mid])
    for _ in range(3):
        assert names(engine.candidates("g_t", "t", "g")) == ["low", "mid", "high"]


def test_priority_beats_load() -> None:
    busy = backend("busy", "g", ["t"], priority=1, in_flight=50)
    idle = backend("idle", "g", ["t"], priority=2)
    engine = RoutingEngine([idle, busy])
    assert names(engine.candidates("g_t", "t", "g")) == ["busy", "idle"]


def test_round_robin_ties_alternate() -> None:
    a = backend("a", "g", ["t"])
    b = backend("b", "g", ["t"])
    c = backend("c", "g", ["t"], priority=200)
    engine = RoutingEngine([a, b, c], load_balancing="round_robin")
    firsts = [names(engine.candidates("g_t", "t", "g")) for _ in range(4)]
    assert firsts == [["a", "b", "c"], ["b", "a", "c"], ["a", "b", "c"], ["b", "a", "c"]]


def test_round_robin_ignores_load() -> None:
    a = backend("a", "g", ["t"], in_flight=9)
    b = backend("b", "g", ["t"])
    engine = RoutingEngine([a, b], load_balancing="round_robin")
    firsts = [names(engine.candidates("g_t", "t", "g"))[0] for _ in range(4)]
    assert firsts == ["a", "b", "a", "b"]


def test_round_robin_per_tool_when_interleaved() -> None:
    a = backend("a", "g", ["t1", "t2"])
    b = backend("b", "g", ["t1", "t2"])
    engine = RoutingEngine([a, b], load_balancing="round_robin")
    seen_t1 = []
    for _ in range(4):
        seen_t1.append(names(engine.candidates("g_t1", "t1", "g"))[0])
        engine.candidates("g_t2", "t2", "g")
    assert seen_t1 == ["a", "b", "a", "b"]


def test_least_in_flight_ties_alternate() -> None:
    a = backend("a", "g", ["t"])
    b = backend("b", "g", ["t"])
    engine = RoutingEngine([a, b], load_balancing="least_in_flight")
    firsts = [names(engine.candidates("g_t", "t", "g"))[0] for _ in range(4)]
    assert firsts == ["a", "b", "a", "b"]


def test_least_in_flight_prefers_idle() -> None:
    busy = backend("busy", "g", ["t"], in_flight=3)
    idle = backend("idle", "g", ["t"])
    engine = RoutingEngine([busy, idle])
    for _ in range(3):
        assert names(engine.candidates("g_t", "t", "g")) == ["idle", "busy"]
    idle.in_flight = 5
    assert names(engine.candidates("g_t", "t", "g")) == ["busy", "idle"]


def test_open_breaker_skipped_with_reason() -> None:
    a = backend("a", "g", ["t"], priority=1)
    b = backend("b", "g", ["t"], priority=2)
    trip(a)
    a.clock.now += 17.7
    engine = RoutingEngine([a, b])
    decision = engine.candidates("g_t", "t", "g")
    assert names(decision) == ["b"]
    assert len(decision.skipped) == 1
    skipped = decision.skipped[0]
    assert skipped.backend is a
    assert skipped.reason == "circuit open, retry in 12.3s"
    assert skipped.selected_by == "capability"


def test_half_open_with_free_slot_admitted_and_without_skipped() -> None:
    a = backend("a", "g", ["t"], priority=1)
    b = backend("b", "g", ["t"], priority=2)
    trip(a)
    a.clock.now += 30
    engine = RoutingEngine([a, b])
    assert names(engine.candidates("g_t", "t", "g")) == ["a", "b"]
    trial = a.breaker.acquire()
    assert trial is not None
    decision = engine.candidates("g_t", "t", "g")
    assert names(decision) == ["b"]
    assert decision.skipped[0].reason == "circuit half-open, no free trial slot"
    trial.success()
    assert names(engine.candidates("g_t", "t", "g")) == ["a", "b"]


def test_all_candidates_open_gives_empty_list() -> None:
    a = backend("a", "g", ["t"])
    trip(a)
    decision = RoutingEngine([a]).candidates("g_t", "t", "g")
    assert decision.candidates == []
    assert [c.backend.name for c in decision.skipped] == ["a"]


def test_describe_order_equals_candidates_order() -> None:
    a = backend("a", "g", ["t"], priority=3)
    b = backend("b", "g", ["t"], priority=1)
    c = backend("c", "g", ["t"], priority=2)
    d = backend("d", "g", ["t"], priority=0)
    trip(d)
    engine = RoutingEngine([a, b, c, d])
    decision = engine.candidates("g_t", "t", "g")
    described = decision.describe()
    chosen = [entry for entry in described if not entry["skipped"]]
    assert [e["backend"] for e in chosen] == names(decision) == ["b", "c", "a"]
    assert [e["position"] for e in chosen] == [1, 2, 3]
    assert all(e["reason"] == "capability" for e in chosen)
    skipped = [entry for entry in described if entry["skipped"]]
    assert len(skipped) == 1
    assert skipped[0]["backend"] == "d"
    assert skipped[0]["position"] is None
    assert skipped[0]["circuit_state"] == "open"
    assert skipped[0]["reason"].startswith("circuit open")
    assert skipped[0]["selected_by"] == "capability"
    assert described[-1] is skipped[0]


def test_default_strategy_path_makes_routed_backends_exclusive() -> None:
    routed = backend("routed", "g", ["t", "special_x"], routes=[RouteRule(pattern="special_*")])
    plain = backend("plain", "g", ["t"])
    path_engine = RoutingEngine([routed, plain], default_strategy="path")
    assert names(path_engine.candidates("g_t", "t", "g")) == ["plain"]
    assert names(path_engine.candidates("g_special_x", "special_x", "g")) == ["routed"]

    capability_engine = RoutingEngine([routed, plain], default_strategy="capability")
    assert sorted(names(capability_engine.candidates("g_t", "t", "g"))) == ["plain", "routed"]


def test_update_backends_recompiles() -> None:
    a = backend("a", routes=[RouteRule(pattern="x*")])
    engine = RoutingEngine([a])
    assert names(engine.candidates("xy", "xy", None)) == ["a"]
    b = backend("b", "", ["xy"])
    engine.update_backends([b])
    assert engine.backends == (b,)
    assert names(engine.candidates("xy", "xy", None)) == ["b"]


def test_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError):
        RoutingEngine([], default_strategy="random")
    with pytest.raises(ValueError):
        RoutingEngine([], load_balancing="random")  # type: ignore[arg-type]
