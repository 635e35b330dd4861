"""The legacy SSE transport (the SDK's ``sse_client``), with the router's HTTP client.

A session is one GET event stream that carries every answer, plus a POST per message. The
router's `BackendHTTPClient` (created per session, as the SDK's client factory asks) bounds
each event and sends notifications in the background, as for streamable HTTP. The SDK parses
this stream with a fixed 1 MiB event cap, so here the message limit is the smaller of that and
``MCP_MAX_MESSAGE_BYTES``; an event over it fails the request it answers with a clear error
instead of ending the whole session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from anyio.abc import TaskGroup
from mcp.client.sse import sse_client

from mcp_router.backends.transports.base import (
    SSE_EVENT_LIMIT,
    BackendTransport,
    TransportObserver,
)
from mcp_router.backends.transports.http import HTTP_TIMEOUT, BackendHTTPClient, make_http_client


class SSETransport(BackendTransport):
    """A backend at ``url`` speaking the 2024-11-05 HTTP+SSE transport."""

    name = "sse"

    @asynccontextmanager
    async def open(self, observer: TransportObserver, tg: TaskGroup) -> AsyncIterator[Any]:
        """One session: the event stream and its message endpoint."""
        assert self.config.url is not None

        def client_factory(
            headers: dict[str, str] | None = None,
            timeout: httpx2.Timeout | None = None,
            auth: httpx2.Auth | None = None,
        ) -> BackendHTTPClient:
            client = make_http_client(
                self.config.name,
                self.limits,
                headers,
                timeout or HTTP_TIMEOUT,
                event_limit=SSE_EVENT_LIMIT,
                answer_errors=False,  # the SDK's SSE writer stops at the first error answer
            )
            client.auth = auth  # type: ignore[assignment]
            client.background, client.observer = tg, observer
            return client

        async with sse_client(
            self.config.url,
            headers=dict(self.config.headers),
            timeout=HTTP_TIMEOUT.connect or 30.0,
            sse_read_timeout=HTTP_TIMEOUT.read or 300.0,
            httpx_client_factory=client_factory,  # type: ignore[arg-type]
        ) as streams:
            yield streams[0], streams[1]
