"""Which protocol era a backend speaks, and how a 2026-07-28 client's request is sent to it.

Every backend keeps its handshake-era (2025-11-25) session: legacy clients use it exactly as
before, and discovery, health probes, subscriptions and log levels run on it. A backend that
also speaks 2026-07-28 gets a second, *modern channel* (`Backend.modern_channel`), found by
one ``server/discover`` probe per connection (`probe_modern`):

- streamable HTTP: probed as soon as the legacy session is up; the channel is stateless
  (each request is its own POST), so it costs no session on the server;
- stdio: a connection is one child process locked to one era, so the channel is a second
  process, started (and probed) when the first 2026-07-28 client's request needs it;
- SSE: always 2025-11-25; never probed.

A 2026-07-28 client's ``tools/call``, ``resources/read``, ``prompts/get`` and
``completion/complete`` go over the modern channel (`ModernRequests`) carrying the client's
own envelope (client info, capabilities, log level) and, on a retry, the backend's
``requestState`` and the client's ``inputResponses``. An ``InputRequiredResult`` the backend
answers with goes back to the client (gateway/passthrough.py wraps its state so the retry
finds this backend again). Without a modern channel the request runs on the legacy session,
where what the backend asks mid-call becomes a router round (gateway/rounds.py).
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import SERVER_INFO_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcp_router.call_context import FrontCall

MODERN = "modern"
LEGACY = "legacy"
_MAX_PAGES = 100  # a tools cursor that never ends cannot hang a channel


class LegacyOnlyError(Exception):
    """The server does not speak the 2026-07-28 era (its answer to ``server/discover``)."""


async def probe_modern(session: ClientSession) -> types.DiscoverResult:
    """Ask ``server/discover`` once and adopt the modern era, or raise `LegacyOnlyError`.

    ``session`` has adopted `LATEST_MODERN_VERSION` already (`Backend` opens the channel with
    ``mode=LATEST_MODERN_VERSION``).

    Unlike the SDK's ``mode="auto"`` there is no fallback ``initialize``: the router already
    holds a legacy session to the server, and a second one would only cost the server a
    session. An error answer, or a result naming no modern version, means legacy only; a
    transport failure or a timeout propagates (it says nothing about the era).

    Its stamp gives the request the modern envelope and headers (as ``send_discover`` would);
    it is sent without the SDK's fixed 10 s probe timeout, since a stdio server may take
    longer to start on a busy machine: the connection's own connect timeout bounds it.
    """
    try:
        result = await session.send_request(
            types.DiscoverRequest(params=types.RequestParams()), types.DiscoverResult
        )
    except MCPError as exc:
        if exc.error.code == types.REQUEST_TIMEOUT:
            raise
        raise LegacyOnlyError(f"server/discover answered {exc.error.code}: {exc}") from exc
    except ValidationError as exc:
        raise LegacyOnlyError("server/discover answered an invalid result") from exc
    if not any(v in result.supported_versions for v in MODERN_PROTOCOL_VERSIONS):
        raise LegacyOnlyError(f"server/discover names only {result.supported_versions}")
    session.adopt(result)
    return result


async def relist_tools(session: ClientSession) -> None:
    """List the server's tools (all pages), so the SDK knows their output schemas and
    ``x-mcp-header`` arguments (the ``Mcp-Param-*`` headers of a modern ``tools/call``)."""
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await session.list_tools(
            params=types.PaginatedRequestParams(cursor=cursor) if cursor else None
        )
        cursor = page.next_cursor
        if not cursor:
            return


def legacy_only(exc: BaseException) -> LegacyOnlyError | None:
    """The `LegacyOnlyError` in ``exc`` (task groups wrap it), if there is one."""
    if isinstance(exc, LegacyOnlyError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = legacy_only(inner)
            if found is not None:
                return found
    return None


class ModernRequests:
    """A modern channel's session as the forwarder's request operations see it.

    The operations are written once for both eras (``s.call_tool(name, args, ...)``); on the
    modern channel each one carries the calling client's envelope, the round it resumes (only
    to the backend that started it) and accepts an ``InputRequiredResult`` as its answer,
    noting on the `FrontCall` which backend asked. Anything else is the plain session.
    """

    def __init__(self, session: ClientSession, front: FrontCall, backend: str) -> None:
        self._session = session
        self._front = front
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def _meta(self, meta: dict[str, Any] | None) -> Any:
        merged = dict(self._front.envelope)
        merged.update(meta or {})
        return merged or None

    def _round(self) -> tuple[Any, str | None]:
        resume = self._front.resume
        if resume is None or resume.backend != self._backend:
            return None, None
        return resume.input_responses, resume.request_state

    def _seen(self, result: Any) -> Any:
        if isinstance(result, types.InputRequiredResult):
            self._front.input_required_from = self._backend
        meta = getattr(result, "meta", None)
        if meta and SERVER_INFO_META_KEY in meta:
            # The backend stamped its own serverInfo; the client's server is the router, whose
            # front stamps a result that carries none (the SDK's runner).
            rest = {k: v for k, v in meta.items() if k != SERVER_INFO_META_KEY}
            result = result.model_copy(update={"meta": rest or None})
        return result

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        read_timeout_seconds: float | None = None,
        progress_callback: ProgressFnT | None = None,
        *,
        meta: dict[str, Any] | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """``tools/call`` in the modern era."""
        responses, state = self._round()

        async def send() -> types.CallToolResult | types.InputRequiredResult:
            return await self._session.call_tool(
                name,
                arguments,
                read_timeout_seconds=read_timeout_seconds,
                progress_callback=progress_callback,
                input_responses=responses,
                request_state=state,
                meta=self._meta(meta),
                allow_input_required=True,
            )

        try:
            result = await send()
        except MCPError as exc:
            if exc.error.code != types.HEADER_MISMATCH:
                raise
            # The channel's listing is stale (the tool's x-mcp-header arguments changed; a
            # modern connection gets no list_changed): the spec's recovery, re-list and resend.
            await relist_tools(self._session)
            result = await send()
        return self._seen(result)

    async def read_resource(
        self, uri: str, *, meta: dict[str, Any] | None = None
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        """``resources/read`` in the modern era."""
        responses, state = self._round()
        result = await self._session.read_resource(
            uri,
            input_responses=responses,
            request_state=state,
            meta=self._meta(meta),
            allow_input_required=True,
        )
        return self._seen(result)

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None = None, *, meta: Any = None
    ) -> types.GetPromptResult | types.InputRequiredResult:
        """``prompts/get`` in the modern era."""
        responses, state = self._round()
        result = await self._session.get_prompt(
            name,
            arguments,
            input_responses=responses,
            request_state=state,
            meta=self._meta(meta),
            allow_input_required=True,
        )
        return self._seen(result)
