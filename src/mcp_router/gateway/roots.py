"""``notifications/roots/list_changed`` from a client, to the backend sessions that serve it.

Only a client's own (``session_mode: per_client``) sessions declare roots (shared sessions
never do: backends/capabilities.py), so those are the sessions told; the server then asks for
the roots again, and the question reaches that client (its owner).
"""

from __future__ import annotations

import logging
from typing import Any

import mcp_types as types
from fastmcp import FastMCP

from mcp_router.backends.manager import BackendManager

logger = logging.getLogger("mcp_router.roots")


def attach_roots_relay(server: FastMCP, manager: BackendManager) -> None:
    """Handle ``notifications/roots/list_changed`` on ``server`` by telling the backends."""

    async def on_roots_changed(ctx: Any, _params: types.NotificationParams) -> None:
        connection = getattr(ctx.session, "_connection", None)
        if connection is None:
            return
        for backend in list(manager.backends.values()):
            own = backend.client_session(connection)
            if own is None:
                continue
            try:
                await own.notify_roots_changed()
            except Exception as exc:  # the session is going away: nothing to tell
                logger.debug("roots/list_changed to '%s' dropped: %s", backend.name, exc)

    server._mcp_server.add_notification_handler(
        "notifications/roots/list_changed", types.NotificationParams, on_roots_changed
    )
