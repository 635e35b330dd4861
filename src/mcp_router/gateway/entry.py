"""The one entry for every routed request a client makes.

Whoever receives the request — the routing middleware (the hot path of ``tools/call``,
``resources/read`` and ``prompts/get``), a FastMCP component, ``router_call_tool`` in search
mode, or the completion handler — hands it to `CallEntry`, which:

1. captures the caller's front request (`FrontCall`: session, request id, progress token,
   protocol era) and makes it the current call, so progress, log messages, sampling,
   elicitation and roots raised by the backend reach exactly this client, and a
   ``session_mode: per_client`` backend uses this client's own session;
2. asks the `Forwarder` to route it (candidates, breakers, retries, failover);
3. returns the backend's result verbatim, or the router's error in the one shape the error
   model gives it (`mcp_router.errors`): an ``isError`` result for a tool call, a JSON-RPC
   error otherwise. A backend's own JSON-RPC error passes through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import mcp_types as types
from fastmcp.server.context import Context
from mcp.shared.exceptions import MCPError

from mcp_router.call_context import FrontCall, current_call
from mcp_router.errors import (
    RoutingError,
    UnknownComponentError,
    is_client_mistake,
    to_error_data,
    to_tool_result,
)
from mcp_router.gateway import passthrough
from mcp_router.gateway.rounds import InputRounds
from mcp_router.routing.forwarder import Forwarder

logger = logging.getLogger("mcp_router.calls")

T = TypeVar("T")

# `_request` for a method that never answers with an InputRequiredResult.
_NOT_IN_ROUNDS: Any = object()


class CallEntry:
    """Runs one client request through the router with the caller's context set.

    For a 2026-07-28 caller a tool call is a multi-round-trip request (`InputRounds`): what a
    legacy backend asks mid-call comes back as an ``InputRequiredResult``, and the retry
    continues the same backend call. A backend that speaks 2026-07-28 asks with its own
    ``InputRequiredResult``, which passes through (`passthrough`), and the retry goes back to
    that backend.
    """

    def __init__(self, forwarder: Forwarder, rounds: InputRounds | None = None) -> None:
        self.forwarder = forwarder
        self.rounds = rounds if rounds is not None else InputRounds(timeout=300.0)

    @contextmanager
    def _as_current(self, ctx: Context | None) -> Iterator[FrontCall | None]:
        call = FrontCall.from_context(ctx)
        token = current_call.set(call)
        try:
            yield call
        finally:
            current_call.reset(token)

    async def call_tool(
        self, ctx: Context | None, name: str, arguments: dict[str, Any] | None
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Call an exposed tool; routing failures come back as an ``isError`` result."""
        with self._as_current(ctx) as call:
            progress = call.progress if call and call.progress_token is not None else None

            async def run() -> types.CallToolResult | types.InputRequiredResult:
                try:
                    return await self.forwarder.call_tool(
                        name, arguments, progress_callback=progress
                    )
                except RoutingError as exc:
                    _log_router_error("tools/call", name, exc)
                    return to_tool_result(exc)

            return await self._in_rounds(ctx, call, ("tools/call", name, arguments), run)

    async def _in_rounds(
        self,
        ctx: Context | None,
        call: FrontCall | None,
        binding: tuple[str, str, Any],
        run: Callable[[], Awaitable[T]],
    ) -> T | types.InputRequiredResult:
        """Run ``run`` directly, or, for a 2026-07-28 caller, as a multi-round-trip request
        (what the backend asks mid-call comes back as an ``InputRequiredResult``)."""
        if call is None or not call.modern or ctx is None:
            return await run()
        # A retry of a round a modern backend started goes back to that backend (passthrough);
        # anything else is the router's own round or a first request.
        state, responses = passthrough.resume(call, ctx.request_state, _input_responses(ctx))
        result = await self.rounds.run(call, binding, run, state, responses)
        return passthrough.hand_out(call, result)

    async def read_resource(
        self, ctx: Context | None, uri: str
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        """Read an exposed resource URI; errors are raised as `MCPError`.

        The contents' URIs come back in exposed form (`links.expose_read_result`). For a
        2026-07-28 caller the read is a multi-round-trip request, like a tool call.
        """
        return await self._request(
            ctx,
            "resources/read",
            uri,
            lambda: self.forwarder.read_resource(uri),
            uri=uri,
            bound=None,
        )

    async def get_prompt(
        self, ctx: Context | None, name: str, arguments: dict[str, str] | None
    ) -> types.GetPromptResult | types.InputRequiredResult:
        """Render an exposed prompt; errors are raised as `MCPError`. For a 2026-07-28
        caller the render is a multi-round-trip request, like a tool call."""
        return await self._request(
            ctx,
            "prompts/get",
            name,
            lambda: self.forwarder.get_prompt(name, arguments),
            bound=arguments,
        )

    async def complete(
        self,
        ctx: Context | None,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: types.CompletionArgument,
        context: types.CompletionContext | None,
    ) -> types.Completion | None:
        """Complete an argument of an exposed prompt or template; errors as `MCPError`."""
        what = ref.name if isinstance(ref, types.PromptReference) else ref.uri
        return await self._request(
            ctx,
            "completion/complete",
            what,
            lambda: self.forwarder.complete(ref, argument, context),
        )

    async def _request(
        self,
        ctx: Context | None,
        method: str,
        what: str,
        run: Callable[[], Awaitable[T]],
        *,
        uri: str | None = None,
        bound: Any = _NOT_IN_ROUNDS,
    ) -> T | types.InputRequiredResult:
        """``bound``: the arguments a multi-round-trip request is bound to (by default the
        method takes no part in rounds, as ``completion/complete``)."""
        with self._as_current(ctx) as call:
            try:
                if bound is _NOT_IN_ROUNDS:
                    if call is not None and call.modern and ctx is not None:
                        passthrough.resume(call, ctx.request_state, ctx.input_responses)
                    return passthrough.hand_out(call, await run())
                return await self._in_rounds(ctx, call, (method, what, bound), run)
            except UnknownComponentError as exc:
                _log_router_error(method, what, exc)
                if uri is not None:
                    # SEP-2164: a missing resource is -32602 with the URI asked for in data.
                    raise MCPError(
                        types.INVALID_PARAMS, f"Resource not found: {uri!r}", data={"uri": uri}
                    ) from exc
                raise MCPError.from_error_data(to_error_data(exc)) from exc
            except RoutingError as exc:
                _log_router_error(method, what, exc)
                raise MCPError.from_error_data(to_error_data(exc)) from exc
            except MCPError as exc:
                # The backend's own answer: unchanged, but for the URI it echoes (SEP-2164).
                if uri is not None:
                    _expose_echoed_uri(exc, uri, self.forwarder)
                raise


def _input_responses(ctx: Context) -> dict[str, Any] | None:
    """The client's ``inputResponses``; a value that is not an object of answers is a protocol
    error (-32602), never a request without answers."""
    rc = ctx.request_context
    params = rc._srctx.params if rc is not None else None
    if isinstance(params, dict) and "inputResponses" in params:
        raw = params["inputResponses"]
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise MCPError(
                types.INVALID_PARAMS, "inputResponses must be an object of input responses"
            )
    return ctx.input_responses


def _log_router_error(method: str, what: str, exc: RoutingError) -> None:
    # A client mistake (an unknown name) is not the router's problem: INFO, no traceback.
    # A backend that could not answer is already in the call log line; WARNING once here.
    level = logging.INFO if is_client_mistake(exc) else logging.WARNING
    logger.log(level, "%s %s: %s", method, what, exc)


def _expose_echoed_uri(exc: MCPError, exposed: str, forwarder: Forwarder) -> None:
    # The backend names the URI it was asked for, which is its own; the client asked with the
    # exposed one. Code and everything else stay as the backend sent them.
    resolved = forwarder.manager.index.resolve_uri(exposed)
    if resolved is None or resolved.original_uri == exposed:
        return
    original, error = resolved.original_uri, exc.error
    data = error.data
    if isinstance(data, dict) and data.get("uri") == original:
        error.data = {**data, "uri": exposed}
    if f"'{original}'" in error.message or f'"{original}"' in error.message:
        error.message = error.message.replace(f"'{original}'", f"'{exposed}'").replace(
            f'"{original}"', f'"{exposed}"'
        )
