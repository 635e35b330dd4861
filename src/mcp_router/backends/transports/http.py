"""The streamable HTTP transport (the SDK's), over a pooled HTTP client the router owns.

The transport creates its `BackendHTTPClient` when the backend starts and closes it when the
backend stops: one per backend, kept across reconnects (the SSL context is built once, and
`http_pool.KeepAliveTransport` keeps connections alive across calls).

What the client adds to plain HTTP, for the router's sake:

- A POST that cannot connect gets a "not reached" answer, and one whose connection breaks
  before the answer a "connection lost" answer. Without this the SDK's transport lets the
  error escape its task group, which ends the session and fails every request in flight on
  it as "connection closed", with no way to tell that this one never left.
- A POST whose session the server no longer knows (404 with a session id, as the spec says;
  some servers answer 400 and name the session) gets a "session expired" answer, so the
  backend re-initializes and runs the request again: it surely did not run.
- Bounded answers: a JSON body or an SSE event over ``MCP_MAX_MESSAGE_BYTES`` fails the
  request it answers with an error naming the limit and the backend (the SDK's own 1 MiB
  event limit, which failed such calls as "connection closed", is lifted).
- Notifications and responses the router POSTs (courtesy cancels, progress, answers to the
  server's requests) are sent in the background, bounded: the SDK's writer would otherwise
  wait for each one's HTTP answer, and a server that accepts connections but never answers
  (stopped, overloaded) would hold every later request of the session behind it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskGroup
from mcp.client.streamable_http import streamable_http_client

from mcp_router.backends.http_pool import KeepAliveTransport
from mcp_router.backends.transports.base import (
    CONNECTION_LOST,
    NOT_REACHED,
    SESSION_EXPIRED,
    BackendTransport,
    Envelope,
    TransportLimits,
    TransportObserver,
    read_envelope,
    router_error,
    snippet,
    too_large_error,
)
from mcp_router.backends.transports.framing import LimitedEventStream

logger = logging.getLogger("mcp_router.backend")

# Backends may hold a response stream open for long-running calls; the per-request timeout
# is enforced by `Backend.request`, so the HTTP read timeout only guards against dead sockets.
HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)
_SESSION_HEADER = "mcp-session-id"
# A notification POST nobody waits for: how long it may take, and how many may be pending.
_BACKGROUND_POST_SECONDS = 10.0
_MAX_BACKGROUND_POSTS = 64
# Sent inline: the server must see it before the session's next requests.
_INLINE_NOTIFICATIONS = frozenset({"notifications/initialized"})


def _exc_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc) or 'no detail'}"


def router_response(request: httpx2.Request, error: types.ErrorData) -> httpx2.Response:
    """An HTTP answer carrying a router-synthesised JSON-RPC error (the SDK maps its id)."""
    body = {"jsonrpc": "2.0", "id": None, "error": error.model_dump(mode="json")}
    return httpx2.Response(503, json=body, request=request)


def _envelope(request: httpx2.Request) -> Envelope:
    try:
        content = request.content
    except httpx2.RequestNotRead:
        return Envelope(None, None, False)
    return read_envelope(content)


class BackendHTTPClient(httpx2.AsyncClient):
    """The per-backend HTTP client (see the module docstring for what it adds)."""

    def __init__(
        self,
        backend: str,
        limits: TransportLimits,
        *,
        event_limit: int | None = None,
        answer_errors: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self.limits = limits
        # The SSE transport's own parser caps events lower than MCP_MAX_MESSAGE_BYTES.
        self.event_limit = min(event_limit or limits.max_message_bytes, limits.max_message_bytes)
        # False where the SDK transport would end its writer on an error answer (legacy SSE).
        self.answer_errors = answer_errors
        # Set by the transport for the life of one session.
        self.background: TaskGroup | None = None
        self.observer: TransportObserver | None = None
        self._pending_posts = 0

    async def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        """Send ``request``; see the module docstring for the answers the router makes up."""
        if request.method != "POST":
            response = await super().send(request, **kwargs)
            return self._limit_events(request, response, None)
        envelope = _envelope(request)
        if (
            self.background is not None
            and not (envelope.id is not None and envelope.method is not None)  # not a request
            and envelope.method not in _INLINE_NOTIFICATIONS
            and envelope.complete
        ):
            return self._send_in_background(request, kwargs, envelope)
        if not self.answer_errors:
            response = await super().send(request, **kwargs)
            return self._limit_events(request, response, envelope.id)
        try:
            response = await super().send(request, **kwargs)
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            url = request.url
            where = f"{url.host}:{url.port}" if url.port else url.host
            message = f"cannot connect to {where} ({_exc_text(exc)})"
            return router_response(request, router_error(message, NOT_REACHED))
        except httpx2.TransportError as exc:
            # Sent, but the connection broke before an answer: it may have run. Fail only this
            # request; left to escape, the error would end the session and every other
            # request in flight on it.
            message = f"connection lost during the request ({_exc_text(exc)})"
            return router_response(request, router_error(message, CONNECTION_LOST))
        if response.status_code in (400, 404) and _SESSION_HEADER in request.headers:
            body = await response.aread()
            await response.aclose()
            if response.status_code == 404 or b"session" in body.lower():
                detail = snippet(body.decode("utf-8", "replace")) or "no body"
                message = f"session expired: HTTP {response.status_code} ({detail})"
                return router_response(request, router_error(message, SESSION_EXPIRED))
            return httpx2.Response(
                response.status_code, headers=response.headers, content=body, request=request
            )
        content_type = response.headers.get("content-type", "").lower()
        if content_type.startswith("application/json"):
            return await self._bounded_json(request, response)
        return self._limit_events(request, response, envelope.id)

    def _too_large(self, what: str, limit: int | None = None) -> types.ErrorData:
        return too_large_error(self.backend, limit or self.limits.max_message_bytes, what)

    async def _bounded_json(
        self, request: httpx2.Request, response: httpx2.Response
    ) -> httpx2.Response:
        """Read a JSON answer here, up to the limit (the SDK would read it all, unbounded)."""
        limit = self.limits.max_message_bytes
        declared = response.headers.get("content-length", "")
        body = bytearray()
        try:
            if declared.isdigit() and int(declared) > limit:
                return router_response(request, self._too_large("a response"))
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    return router_response(request, self._too_large("a response"))
        except httpx2.TransportError as exc:
            message = f"connection lost during the request ({_exc_text(exc)})"
            return router_response(request, router_error(message, CONNECTION_LOST))
        finally:
            await response.aclose()
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")
        ]
        return httpx2.Response(
            response.status_code, headers=headers, content=bytes(body), request=request
        )

    def _limit_events(
        self,
        request: httpx2.Request,
        response: httpx2.Response,
        request_id: types.RequestId | None,
    ) -> httpx2.Response:
        content_type = response.headers.get("content-type", "").lower()
        if not content_type.startswith("text/event-stream"):
            return response

        def dropped(envelope: Envelope) -> None:
            if self.observer is None:
                return
            detail = f"an event larger than the limit of {self.event_limit} bytes"
            # A notification or server request nobody waits on can go; an unknown one might
            # have been the answer some caller waits for: start over.
            self.observer.on_message_too_large(detail, fatal=envelope.method is None)

        response.stream = LimitedEventStream(
            response.stream,  # type: ignore[arg-type]
            limit=self.event_limit,
            make_error=lambda: self._too_large("an event", self.event_limit),
            fallback_id=request_id,
            on_dropped=dropped,
        )
        return response

    def _send_in_background(
        self, request: httpx2.Request, kwargs: dict[str, Any], envelope: Envelope
    ) -> httpx2.Response:
        assert self.background is not None
        what = envelope.method or f"response to {envelope.id!r}"
        if self._pending_posts >= _MAX_BACKGROUND_POSTS:
            logger.warning(
                "backend '%s': %s not sent: %d notifications pending (the backend is not "
                "answering)",
                self.backend,
                what,
                self._pending_posts,
            )
        else:
            self._pending_posts += 1
            self.background.start_soon(self._post_quietly, request, kwargs, what)
        return httpx2.Response(202, request=request)

    async def _post_quietly(
        self, request: httpx2.Request, kwargs: dict[str, Any], what: str
    ) -> None:
        try:
            with anyio.move_on_after(_BACKGROUND_POST_SECONDS) as scope:
                response = await super().send(request, **kwargs)
                await response.aclose()
            if scope.cancelled_caught:
                logger.info(
                    "backend '%s': %s got no HTTP answer within %gs",
                    self.backend,
                    what,
                    _BACKGROUND_POST_SECONDS,
                )
        except Exception as exc:  # a courtesy: its failure must not end the session
            logger.info("backend '%s': %s failed: %s", self.backend, what, _exc_text(exc))
        finally:
            self._pending_posts -= 1


def make_http_client(
    backend: str,
    limits: TransportLimits,
    headers: dict[str, str] | None,
    timeout: httpx2.Timeout,
    **options: Any,
) -> BackendHTTPClient:
    """One pooled HTTP client for a backend (SSL context built once)."""
    return BackendHTTPClient(
        backend,
        limits,
        headers=headers,
        timeout=timeout,
        transport=KeepAliveTransport(),
        **options,
    )


class StreamableHTTPTransport(BackendTransport):
    """A backend at ``url`` speaking streamable HTTP; owns its pooled client."""

    name = "http"
    _client: BackendHTTPClient | None = None

    async def __aenter__(self) -> StreamableHTTPTransport:
        self._client = make_http_client(
            self.config.name, self.limits, dict(self.config.headers), HTTP_TIMEOUT
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    @asynccontextmanager
    async def open(self, observer: TransportObserver, tg: TaskGroup) -> AsyncIterator[Any]:
        """One session over the pooled client."""
        client = self._client
        assert self.config.url is not None and client is not None, "enter the transport first"
        client.background, client.observer = tg, observer
        try:
            # The router bounds events itself (MCP_MAX_MESSAGE_BYTES), with a clear error.
            async with streamable_http_client(
                self.config.url, http_client=client, max_sse_event_size=None
            ) as streams:
                yield streams[0], streams[1]
        finally:
            client.background = client.observer = None
