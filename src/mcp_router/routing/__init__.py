"""Routing: which backends serve a call, in which order."""

from mcp_router.routing.engine import (
    Candidate,
    LoadBalancingMode,
    RoutableBackend,
    RoutingDecision,
    RoutingEngine,
)

__all__ = [
    "Candidate",
    "LoadBalancingMode",
    "RoutableBackend",
    "RoutingDecision",
    "RoutingEngine",
]
