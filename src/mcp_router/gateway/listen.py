"""``subscriptions/listen`` (2026-07-28, SEP-2575): the router's change notifications for
clients on the stateless era, and what ``server/discover`` says about them.

A 2026-07-28 client has no standing stream: it opens one with ``subscriptions/listen``,
naming what it wants (tools/prompts/resources list changes, updates of some resource URIs).
The router serves it with the SDK's `ListenHandler` over an in-process bus, fed by the same
events that reach handshake-era clients:

- list changes: `SessionRegistry.broadcast` (one coalesced event per list kind when the
  aggregated index changed, whichever backend caused it, or a governance change);
- resource updates: for each URI the stream asks about, the router subscribes on the backend
  that serves it (`ProtocolRelay.subscribe_stream`, the same per-(backend, URI) subscription
  handshake-era clients share) *before* the acknowledgement, so the ack means every backend
  involved has accepted; the backend's ``notifications/resources/updated`` is published once
  with the exposed URI. The stream's subscriptions end with the stream.

``server/discover`` advertises ``listChanged`` for tools, prompts and resources (the router's
lists change whenever a backend's do, or a backend comes or goes) and ``resources.subscribe``
only while some connected backend supports resource subscriptions.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import anyio
import mcp_types as types
from fastmcp import FastMCP
from fastmcp.server.middleware import Middleware, MiddlewareContext
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)

from mcp_router.backends.backend import BackendState
from mcp_router.backends.manager import BackendManager
from mcp_router.gateway.protocol import ProtocolRelay

logger = logging.getLogger("mcp_router.listen")

UNSUBSCRIBE_SECONDS = 10.0  # a backend that does not answer unsubscribe is not waited on longer

_LIST_EVENTS: dict[str, ServerEvent] = {
    "tools": ToolsListChanged(),
    "prompts": PromptsListChanged(),
    "resources": ResourcesListChanged(),
}


class ListenStreams(Middleware):
    """Serves ``subscriptions/listen`` and keeps ``server/discover`` true to the backends."""

    def __init__(self, manager: BackendManager, relay: ProtocolRelay) -> None:
        self._manager = manager
        self._relay = relay
        self._bus = InMemorySubscriptionBus()
        self._handler = ListenHandler(self._bus)
        relay.publish_updated = self.publish_updated

    def attach(self, server: FastMCP) -> None:
        """Register the request handler (the SDK then advertises the listChanged flags)."""
        server._mcp_server.add_request_handler(
            "subscriptions/listen", types.SubscriptionsListenRequestParams, self._listen
        )
        server.add_middleware(self)

    async def _listen(
        self, ctx: Any, params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        token = secrets.token_hex(8)
        for uri in params.notifications.resource_subscriptions or ():
            # Subscribed on the backend before the ack. A URI no backend serves is honored
            # and never fires, as the spec has it for a server's own unknown URIs.
            await self._relay.subscribe_stream(ctx, token, uri)
        try:
            return await self._handler(ctx, params)
        finally:
            # The stream usually ends by cancellation (the client went away): shielded, so
            # the backend subscriptions are dropped all the same, within a bound.
            with anyio.CancelScope(shield=True), anyio.move_on_after(UNSUBSCRIBE_SECONDS):
                await self._relay.unsubscribe_stream(token)

    async def publish_lists(self, kinds: set[str]) -> None:
        """Tell every listen stream that asked that these lists changed."""
        for kind, event in _LIST_EVENTS.items():
            if kind in kinds:
                await self._bus.publish(event)

    async def publish_updated(self, exposed_uri: str) -> None:
        """Tell every listen stream that asked about ``exposed_uri`` that it changed."""
        await self._bus.publish(ResourceUpdated(uri=exposed_uri))

    async def on_discover(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        result = await call_next(context)
        subscribe = any(
            b.state is BackendState.CONNECTED
            and b.capabilities is not None
            and b.capabilities.resources is not None
            and bool(b.capabilities.resources.subscribe)
            for b in self._manager.backends.values()
        )
        if isinstance(result, dict):
            resources = result.get("capabilities", {}).get("resources")
            if isinstance(resources, dict):
                resources["subscribe"] = subscribe
            return result
        resources = getattr(getattr(result, "capabilities", None), "resources", None)
        if resources is not None:
            resources.subscribe = subscribe
        return result
