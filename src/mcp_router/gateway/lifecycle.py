"""Start-up and shutdown of the front: readiness, the discovery gate, draining on SIGTERM.

The port opens before discovery ends (backends start in the background), so a request that
arrives early must still get a correct answer: :class:`LifecycleGate`, the outermost FastMCP
middleware, holds every request but ``initialize``/``ping`` until discovery is done (bounded),
so an early ``tools/list`` lists what the backends offer instead of an empty catalog.

On SIGTERM the front drains: readiness turns 503, new sessions are refused, and requests in
flight get up to ``MCP_SHUTDOWN_GRACE_SECONDS`` to finish before the server stops (which cancels
what is left and closes the backends' sessions).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from fastmcp.server.middleware import Middleware, MiddlewareContext
from mcp.shared.exceptions import MCPError

from mcp_router.state import StateStore

logger = logging.getLogger("mcp_router.lifecycle")

# Methods answered without the catalog: they never wait for discovery.
_CATALOG_FREE = frozenset({"initialize", "ping", "server/discover", "logging/setLevel"})
SHUTTING_DOWN = "mcp-router is shutting down (draining); connect to another replica or retry"


class Lifecycle:
    """What the front needs to know about the router's life: discovered, draining, busy."""

    def __init__(self, discovery_wait_seconds: float = 60.0) -> None:
        self.discovered = anyio.Event()
        self.draining = False
        self.discovery_wait_seconds = discovery_wait_seconds
        self.in_flight = 0  # MCP requests being handled
        self.http_in_flight = 0  # HTTP requests on the MCP endpoints whose response is not done
        self._idle = anyio.Event()
        self._idle.set()

    def reset(self) -> None:
        """Back to "not discovered" (the backends were stopped and may start again)."""
        self.discovered = anyio.Event()
        self.draining = False

    def begin_drain(self) -> None:
        """Readiness goes 503 and new sessions are refused from now on."""
        self.draining = True

    def enter(self, http: bool = False) -> None:
        """A request started (``http``: an HTTP request on an MCP endpoint)."""
        if http:
            self.http_in_flight += 1
        else:
            self.in_flight += 1
        self._idle = anyio.Event() if self._idle.is_set() else self._idle

    def leave(self, http: bool = False) -> None:
        """A request finished."""
        if http:
            self.http_in_flight -= 1
        else:
            self.in_flight -= 1
        if self.in_flight <= 0 and self.http_in_flight <= 0:
            self._idle.set()

    @property
    def busy(self) -> int:
        """Requests in flight (MCP requests, or HTTP responses not yet complete)."""
        return max(self.in_flight, self.http_in_flight)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until nothing is in flight; True if it got there."""
        with anyio.move_on_after(timeout):
            while self.in_flight > 0 or self.http_in_flight > 0:
                await self._idle.wait()  # a request may start right after: the loop looks again
            return True
        return False

    def readiness(
        self, manager: Any, state: StateStore | None = None
    ) -> tuple[bool, dict[str, Any]]:
        """(ready, body) for ``/ready``: discovery done, a backend connected, not draining,
        the state store (``MCP_STATE_URL``) reachable when one is configured."""
        backends = list(manager.backends.values())
        connected = sum(1 for b in backends if b.state.value == "connected")
        reason = None
        if self.draining:
            reason = "draining: the router is shutting down"
        elif not self.discovered.is_set():
            reason = "discovery in progress"
        elif connected == 0:
            reason = "no backend connected"
        elif state is not None and not state.healthy:
            reason = state.problem or f"state store {state.shown_url()} unreachable"
        body: dict[str, Any] = {
            "ready": reason is None,
            "backends": len(backends),
            "connected": connected,
            "tools": len(manager.index.tools),
            "discovery_done": self.discovered.is_set(),
            "draining": self.draining,
        }
        if state is not None:
            body["state_store"] = {"url": state.shown_url(), "reachable": state.healthy}
            body["replica"] = state.replica_id
        if reason is not None:
            body["reason"] = reason
        return reason is None, body


class LifecycleGate(Middleware):
    """Counts requests in flight (for draining) and holds catalog requests until discovery.

    It must be the first middleware: the routing middleware answers routed names itself and
    would see an empty catalog before discovery.
    """

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle

    async def on_request(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        """Refuse ``initialize`` while draining; wait (bounded) for discovery; count."""
        lifecycle = self.lifecycle
        method = context.method
        if method == "initialize" and lifecycle.draining:
            raise MCPError(code=-32000, message=SHUTTING_DOWN)
        lifecycle.enter()
        try:
            if method not in _CATALOG_FREE and not lifecycle.discovered.is_set():
                with anyio.move_on_after(lifecycle.discovery_wait_seconds):
                    await lifecycle.discovered.wait()
            return await call_next(context)
        finally:
            lifecycle.leave()
