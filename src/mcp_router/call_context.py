"""Relaying what a backend raises during a call back to the client that made the call.

A routed call captures its front request as a `FrontCall`: the request-bound server session,
the request id and the client's progress token. Everything the backend sends during that
call — progress, log messages, and the server-to-client requests sampling, elicitation and
roots — goes through that `FrontCall`, so it reaches exactly that client and no other, even
though all clients share one backend session.

Which call a backend message belongs to:
- progress carries its own token, so each call's progress callback is the call itself;
- over streamable HTTP the SDK runs the backend's callbacks in the context of the request
  that sent the call, so `current_call` (a context variable) names the call;
- over stdio and SSE there is no such link: when exactly one relayed call is in flight on that
  backend, it is that one; otherwise the message cannot be attributed, and it is refused
  (requests) or kept in the router's own log (notifications), never sent to a guess. An input
  round parked on its client (its questions handed out, the retry not yet in) does not count:
  its backend call waits on those questions and asks nothing new until the client answers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from fastmcp.server.context import Context
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

logger = logging.getLogger("mcp_router.relay")

current_call: ContextVar[FrontCall | None] = ContextVar("mcp_router_front_call", default=None)

# The 2026-07-28 request envelope a client stamps on every request (`_meta`).
ENVELOPE_KEYS = (
    types.CLIENT_INFO_META_KEY,
    types.CLIENT_CAPABILITIES_META_KEY,
    types.LOG_LEVEL_META_KEY,
)


@dataclass(frozen=True)
class Resume:
    """A 2026-07-28 client's retry of a round a modern backend started (SEP-2322).

    The backend's own ``requestState`` (verbatim, None if it sent none) and the client's
    ``inputResponses`` go back to the backend that asked, and only to it.
    """

    backend: str
    request_state: str | None
    input_responses: dict[str, Any] | None


@dataclass(eq=False)
class FrontCall:
    """The client request a routed call serves, and how to reach that client."""

    session: Any  # the request-bound ServerSession of the front connection
    request_id: Any
    progress_token: Any = None
    protocol_version: str | None = None
    in_flight_on: set[str] = field(default_factory=set)  # backends currently serving it
    # For a 2026-07-28 client: asks the client through an InputRequiredResult round (set by
    # the call entry); the backend's server-to-client request waits for the client's retry.
    ask: Callable[[Any], Awaitable[Any]] | None = None
    # A 2026-07-28 client's request envelope (client info, capabilities, log level: the
    # `_meta` keys of `backends.capabilities.ENVELOPE_KEYS`), forwarded to modern backends.
    envelope: dict[str, Any] = field(default_factory=dict)
    # The retry of a round a modern backend started: which backend, and what it gets back.
    resume: Resume | None = None
    # Set when a modern backend answered this request with an InputRequiredResult: its name.
    input_required_from: str | None = None
    # An input round that handed its questions to the client and waits for the retry: its
    # backend call is blocked on those questions, so it asks nothing new until then (and a
    # client that never comes back must not make every other call unattributable).
    parked: bool = False
    # For a 2026-07-28 client's round: the backend needs a capability the client did not
    # declare; the round ends the client's request with -32021 naming it (set by the round).
    lacks: Callable[[dict[str, Any]], None] | None = None

    @classmethod
    def from_context(cls, context: Context | None) -> FrontCall | None:
        """Capture the current front request (None outside a request)."""
        if context is None:
            return None
        rc = context.request_context
        if rc is None:
            return None
        meta = rc._srctx.meta
        token = meta.get("progress_token") if meta else None
        session = rc.session
        version = getattr(session, "protocol_version", None)
        raw = rc.meta if version in MODERN_PROTOCOL_VERSIONS else None
        return cls(
            session=session,
            request_id=rc.request_id,
            progress_token=token,
            protocol_version=version,
            envelope={k: raw[k] for k in ENVELOPE_KEYS if k in raw} if raw else {},
        )

    @property
    def modern(self) -> bool:
        """The client speaks the stateless 2026-07-28 era (no server-to-client requests)."""
        return self.protocol_version in MODERN_PROTOCOL_VERSIONS

    # ------------------------------------------------------------------ notifications

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """Relay one progress notification to this call's client."""
        if self.progress_token is None:
            return
        try:
            await self.session.send_progress_notification(
                progress_token=self.progress_token,
                progress=progress,
                total=total,
                message=message,
                related_request_id=self.request_id,
            )
        except Exception as exc:  # the request it belongs to is over (a client that left)
            logger.debug("progress for a finished request dropped: %s", exc)

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        """Relay a backend log message; the front session applies the client's level."""
        await self.session.send_log_message(
            level=params.level,
            data=params.data,
            logger=params.logger,
            related_request_id=self.request_id,
        )

    # ------------------------------------------------------------------ requests

    def _refuse(self, what: str, capability: types.ClientCapabilities) -> types.ErrorData | None:
        if self.modern and self.ask is None:
            return types.ErrorData(
                code=types.INVALID_REQUEST,
                message=f"{what} is not available: the calling client uses the stateless "
                "2026-07-28 protocol, which has no server-to-client requests during a call",
            )
        if not self.session.check_client_capability(capability):
            if self.modern and self.lacks is not None:
                self.lacks(capability.model_dump(by_alias=True, exclude_none=True, mode="json"))
            return types.ErrorData(
                code=types.INVALID_REQUEST,
                message=f"{what} is not available: the calling client did not declare it",
            )
        return None

    async def sample(self, params: types.CreateMessageRequestParams) -> Any:
        """Relay sampling/createMessage to this call's client and return its answer."""
        refused = self._refuse(
            "sampling", types.ClientCapabilities(sampling=types.SamplingCapability())
        )
        if refused is not None:
            return refused
        if self.modern and self.ask is not None:
            return await self.ask(types.CreateMessageRequest(params=params))
        return await self.session.send_request(
            types.CreateMessageRequest(params=params),
            types.CreateMessageResult,
            metadata=ServerMessageMetadata(related_request_id=self.request_id),
        )

    async def elicit(self, params: Any) -> Any:
        """Relay elicitation/create to this call's client and return its answer."""
        refused = self._refuse(
            "elicitation", types.ClientCapabilities(elicitation=types.ElicitationCapability())
        )
        if refused is not None:
            return refused
        if self.modern and self.ask is not None:
            return await self.ask(types.ElicitRequest(params=params))
        return await self.session.send_request(
            types.ElicitRequest(params=params),
            types.ElicitResult,
            metadata=ServerMessageMetadata(related_request_id=self.request_id),
        )

    async def list_roots(self) -> Any:
        """Relay roots/list to this call's client and return its answer."""
        refused = self._refuse("roots", types.ClientCapabilities(roots=types.RootsCapability()))
        if refused is not None:
            return refused
        if self.modern and self.ask is not None:
            return await self.ask(types.ListRootsRequest())
        return await self.session.send_request(
            types.ListRootsRequest(),
            types.ListRootsResult,
            metadata=ServerMessageMetadata(related_request_id=self.request_id),
        )


class CallRegistry:
    """The relayed calls in flight on one backend, to attribute its messages."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._calls: dict[int, FrontCall] = {}

    def enter(self, call: FrontCall) -> None:
        """A call starts on this backend."""
        self._calls[id(call)] = call

    def leave(self, call: FrontCall) -> None:
        """The call is over on this backend."""
        self._calls.pop(id(call), None)

    def resolve(self) -> FrontCall | None:
        """The call a backend message belongs to, if it can be known for sure."""
        call = current_call.get()
        if call is not None and id(call) in self._calls:
            return call
        active = [c for c in self._calls.values() if not c.parked]
        if len(active) == 1:
            return active[0]
        return None

    def unattributed(self, what: str) -> types.ErrorData:
        """The error for a server-to-client request no single call can own."""
        n = sum(1 for c in self._calls.values() if not c.parked)
        why = (
            "no call is in flight on it"
            if n == 0
            else f"{n} calls from different clients are in flight on the shared session"
        )
        return types.ErrorData(
            code=types.INVALID_REQUEST,
            message=f"mcp-router cannot relay {what} from backend '{self.backend}': {why}; "
            "set `session_mode: per_client` on this backend to give each client its own session",
        )
