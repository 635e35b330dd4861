"""Streamable HTTP answers as JSON until something streams.

The SDK's session transport answers every handshake-era request POST with an SSE stream (or, in
its JSON-response mode, with JSON while dropping whatever the server sends on the request's
behalf: progress, log messages, sampling/elicitation/roots requests). Most routed calls send
nothing before their result, and the stream costs the front a handful of tasks (sse-starlette's
response runs five) plus SSE framing on both ends: about 0.45 ms of server CPU per call,
measured in ``bench/TRANSPORT.md``.

Here the answer waits for the first message the request produces. If that is the request's own
result, it is written as one ``application/json`` body; if it is anything else (a notification
or a server-to-client request for that request), or nothing came within the SSE ping interval
(15 s: an idle connection would be cut by intermediaries), the answer becomes the SDK's
``text/event-stream`` from that message on. Nothing has been written to the client before the
switch, so the switch costs nothing, and the client sees exactly what the spec allows when its
``Accept`` names both types. The protocol stays the SDK's: the POST handler is the SDK's own
code, only the class of its SSE response is this module's (`JsonFirstResponse`); the session
transport keeps SSE mode, so the request-scoped back-channel (``can_send_request``) is kept.
The 2026-07-28 era (stateless POSTs) already defers the same way in the SDK and is untouched.
"""

from __future__ import annotations

import logging
import types
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from fastmcp.server.http import FastMCPStreamableHTTPSessionManager, StreamableHTTPASGIApp
from mcp.server.streamable_http import (
    CONTENT_TYPE_JSON,
    MCP_SESSION_ID_HEADER,
    EventMessage,
    StreamableHTTPServerTransport,
)
from mcp_types import JSONRPCError, JSONRPCResponse
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

logger = logging.getLogger("mcp_router.http")

_SESSION_HEADER = MCP_SESSION_ID_HEADER.encode("ascii")


@dataclass(frozen=True, slots=True)
class _Result:
    """The request's own response, handed to `JsonFirstResponse` before any SSE event."""

    message: JSONRPCResponse | JSONRPCError


class JsonFirstResponse(EventSourceResponse):
    """The SSE response of one request POST, written as JSON when the result comes first."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream: MemoryObjectReceiveStream[Any] = self.body_iterator  # type: ignore[assignment]
        sender = self.data_sender_callable
        if sender is None or not isinstance(stream, MemoryObjectReceiveStream):
            await super().__call__(scope, receive, send)
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)  # the transport's writer: request stream -> ``stream``
            first: Any = None
            ended = False
            with anyio.move_on_after(self.ping_interval or 15.0):
                try:
                    first = await stream.receive()
                except anyio.EndOfStream:
                    ended = True
            if isinstance(first, _Result):
                await self._send_json(first.message, send)
                return
            # Something for this request came before its result (or nothing yet): stream it.
            self.body_iterator = _chain(first, ended, stream)
            self.data_sender_callable = None
            try:
                await super().__call__(scope, receive, send)
            finally:
                # The client may have gone: let the writer fail instead of waiting on a reader.
                stream.close()

    async def _send_json(self, message: JSONRPCResponse | JSONRPCError, send: Send) -> None:
        # Same body and headers as the SDK's JSON-response mode (`_create_json_response`).
        body = message.model_dump_json(by_alias=True, exclude_unset=True).encode()
        headers = [(b"content-type", CONTENT_TYPE_JSON.encode("ascii"))]
        headers += [(k, v) for k, v in self.raw_headers if k == _SESSION_HEADER]
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def _chain(
    first: Any, ended: bool, rest: MemoryObjectReceiveStream[Any]
) -> AsyncIterator[Any]:
    if first is not None:
        yield first
    if ended:
        return
    async for item in rest:
        # A result that comes after the deferral window, with nothing before it: an SSE event
        # now, the same as the SDK's (`_create_event_data`; no event id without an event store,
        # and with one the writer never hands out a `_Result`).
        if isinstance(item, _Result):
            item = {
                "event": "message",
                "data": item.message.model_dump_json(by_alias=True, exclude_unset=True),
            }
        yield item


def _sdk_post_handler() -> Callable[..., Any] | None:
    """The SDK's POST handler with `JsonFirstResponse` as its SSE response class.

    The function is the SDK's own code object, run with globals in which only the name of the
    response class differs, so every check it makes (Accept, content type, session, protocol
    version headers, initialize) stays the SDK's. None if the SDK no longer builds its answer
    from ``EventSourceResponse`` (then the SDK's handler runs unchanged: SSE).
    """
    sdk = StreamableHTTPServerTransport._handle_post_request
    code = sdk.__code__
    if "EventSourceResponse" not in code.co_names or code.co_freevars:
        logger.warning("the SDK's POST handler changed: answers stay SSE")
        return None
    scope = {**sdk.__globals__, "EventSourceResponse": JsonFirstResponse}
    return types.FunctionType(code, scope, sdk.__name__, sdk.__defaults__, sdk.__closure__)


_POST_HANDLER = _sdk_post_handler()


class JsonFirstTransport(StreamableHTTPServerTransport):
    """The SDK's session transport whose request POSTs answer with JSON until something streams.

    Adds no state: a transport the SDK's session manager created becomes one by class.
    """

    if _POST_HANDLER is not None:
        _handle_post_request = _POST_HANDLER

    async def _run_sse_writer(
        self,
        request_id: Any,
        sse_stream_writer: MemoryObjectSendStream[Any],
        request_stream_reader: MemoryObjectReceiveStream[EventMessage],
        priming_event: Any,
    ) -> None:
        """The SDK's writer, but a result that comes first goes out as `_Result` (JSON).

        A priming event (resumability) means the client must get a stream: no JSON then.
        """
        try:
            async with sse_stream_writer, request_stream_reader:
                first = priming_event is None and _POST_HANDLER is not None
                if priming_event is not None:
                    await sse_stream_writer.send(priming_event)
                async for event_message in request_stream_reader:
                    final = isinstance(event_message.message, JSONRPCResponse | JSONRPCError)
                    if first and final:
                        await sse_stream_writer.send(_Result(event_message.message))  # type: ignore[arg-type]
                        break
                    first = False
                    await sse_stream_writer.send(self._create_event_data(event_message))
                    if final:
                        break
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            logger.debug("response of request %s closed before its end", request_id)
        except Exception:
            logger.exception("error writing the response of request %s", request_id)
        finally:
            self._sse_stream_writers.pop(request_id, None)
            await self._clean_up_memory_streams(request_id)


class JsonFirstSessionManager(FastMCPStreamableHTTPSessionManager):
    """FastMCP's session manager whose new sessions use `JsonFirstTransport`."""

    def _admit_session(self, requestor: Any) -> StreamableHTTPServerTransport | None:
        transport = super()._admit_session(requestor)
        if transport is not None and type(transport) is StreamableHTTPServerTransport:
            transport.__class__ = JsonFirstTransport  # no state of its own: a class swap
        return transport


def install(app: Any, endpoint: Callable[[], StreamableHTTPASGIApp | None]) -> None:
    """Make the session manager FastMCP creates in ``app``'s lifespan a `JsonFirstSessionManager`.

    FastMCP builds its manager inside the Starlette lifespan; once the lifespan has started
    (before any request is served) the manager becomes ours by class (it adds no state).
    """
    original: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(starlette_app: Any) -> AsyncIterator[Any]:
        async with original(starlette_app) as state:
            found = endpoint()
            manager = found.session_manager if found is not None else None
            if type(manager) is FastMCPStreamableHTTPSessionManager:
                manager.__class__ = JsonFirstSessionManager
            yield state

    app.router.lifespan_context = lifespan
