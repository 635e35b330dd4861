"""Protocol pass-through beyond calls: subscriptions, completions, log levels, backend messages.

- ``resources/subscribe`` / ``unsubscribe`` map the exposed URI to the backend that serves it;
  the router holds one backend subscription per (backend, URI), counted over the clients that
  asked, re-subscribes after a reconnect, and relays ``notifications/resources/updated`` (with
  the exposed URI) only to the clients that subscribed.
- ``subscriptions/listen`` streams (2026-07-28) take part in the same backend subscriptions
  (`subscribe_stream`; the stream itself is served by `gateway/listen.py`).
- ``completion/complete`` for prompts and resource templates goes to the backend that owns the
  reference, with the backend's own name or URI template.
- ``logging/setLevel``: FastMCP keeps each client's level on its connection; backends are asked
  for the most verbose level any client wants, and every message is filtered per client.
- Backend messages during a call (log messages, sampling, elicitation, roots) go to the calling
  client through `relay.CallRegistry`; see `relay.py` for how a message is attributed.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from fastmcp import FastMCP
from fastmcp.server.dependencies import get_context
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_router.backends.backend import Backend, BackendState
from mcp_router.backends.manager import BackendManager
from mcp_router.errors import BackendError
from mcp_router.gateway.entry import CallEntry
from mcp_router.routing.engine import RoutingEngine

logger = logging.getLogger("mcp_router.protocol")

_LEVELS: tuple[types.LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
CLIENT_LEVEL_KEY = "_fastmcp_client_log_level"  # where FastMCP keeps a connection's level


def client_log_level(session: Any) -> str | None:
    """The level a client set with logging/setLevel (kept on its connection by FastMCP)."""
    connection = getattr(session, "_connection", None)
    return None if connection is None else connection.state.get(CLIENT_LEVEL_KEY)


def level_allows(minimum: str | None, level: str) -> bool:
    """Whether a message at ``level`` passes a client's minimum (None: everything passes)."""
    if minimum is None or minimum not in _LEVELS or level not in _LEVELS:
        return True
    return _LEVELS.index(level) >= _LEVELS.index(minimum)


class _Subscription:
    """One backend subscription and the clients that asked for it."""

    def __init__(self, session: Backend, original_uri: str) -> None:
        self.backend = session.name
        self.session = session  # the backend session subscribed (a client's profile or own)
        self.original_uri = original_uri
        # connection id -> (the client's connection, weakly; exposed URI)
        self.clients: dict[int, tuple[weakref.ref[Any], str]] = {}
        # subscriptions/listen stream token -> exposed URI (gateway/listen.py)
        self.streams: dict[str, str] = {}

    @property
    def unused(self) -> bool:
        return not self.clients and not self.streams


class ProtocolRelay:
    """Wires subscriptions, completions and backend messages between clients and backends."""

    def __init__(self, manager: BackendManager, engine: RoutingEngine, entry: CallEntry) -> None:
        self.manager = manager
        self.engine = engine
        self.entry = entry
        # (method, exposed name or URI) -> raises an MCPError when refused (governance)
        self.check: Callable[[str, str], None] | None = None
        self._subs: dict[tuple[str, str], _Subscription] = {}
        self._backend_level: str | None = None  # most verbose level asked of the backends
        # Where a resource update for listen streams goes (set by gateway/listen.py).
        self.publish_updated: Callable[[str], Awaitable[None]] | None = None
        # (client connection, exposed URI) -> ask the other replicas of a set to drop it
        self.remote_unsubscribe: Callable[[Any, str], Awaitable[None]] | None = None

    # ------------------------------------------------------------------ wiring

    def attach(self, server: FastMCP) -> None:
        """Register the request handlers on the server (and advertise the capabilities)."""
        low = server._mcp_server
        low.add_request_handler(
            "resources/subscribe", types.SubscribeRequestParams, self._subscribe
        )
        low.add_request_handler(
            "resources/unsubscribe", types.UnsubscribeRequestParams, self._unsubscribe
        )
        set_level = low.get_request_handler("logging/setLevel")
        if set_level is not None:
            inner = set_level.handler

            async def on_set_level(ctx: Any, params: types.SetLevelRequestParams) -> Any:
                result = await inner(ctx, params)
                await self._fan_out_level(params.level)
                return result

            low.add_request_handler("logging/setLevel", types.SetLevelRequestParams, on_set_level)
        server.add_completion_handler(self._complete)

    # ------------------------------------------------------------------ resolution

    def _owners(self, exposed_uri: str) -> tuple[list[Backend], str]:
        """The backends that can serve an exposed URI, in routing order (breakers checked),
        and its original URI."""
        resolved = self.manager.index.resolve_uri(exposed_uri)
        if resolved is None:
            raise MCPError(
                types.INVALID_PARAMS,
                f"Resource not found: {exposed_uri!r}",
                data={"uri": exposed_uri},
            )
        owners = resolved.owners
        decision = self.engine.group_candidates(
            exposed_uri,
            resolved.original_uri,
            resolved.group,
            None if owners is None else (lambda b: b.name in owners),
        )
        return decision.backends, resolved.original_uri  # type: ignore[return-value]

    @staticmethod
    def _supports_subscribe(backend: Backend) -> bool:
        caps = backend.capabilities
        return bool(caps and caps.resources and caps.resources.subscribe)

    # ------------------------------------------------------------------ subscriptions

    async def _subscribe(self, ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        sub = await self._backend_subscription(ctx, params.uri)
        connection = ctx.session._connection
        sub.clients[id(connection)] = (weakref.ref(connection), params.uri)
        return types.EmptyResult()

    async def _backend_subscription(self, ctx: Any, exposed_uri: str) -> _Subscription:
        """The backend subscription for ``exposed_uri`` on the session serving this client
        (made now if it is the first); MCPError when no backend can take it."""
        owners, original = self._owners(exposed_uri)
        if self.check is not None:
            self.check("resources/subscribe", exposed_uri)
        live = [
            b for b in owners if b.state is BackendState.CONNECTED and self._supports_subscribe(b)
        ]
        if not live:
            raise MCPError(
                types.INVALID_PARAMS,
                f"cannot subscribe to {exposed_uri!r}: no connected backend serving it "
                "supports resource subscriptions",
            )
        connection = ctx.session._connection
        modern = getattr(ctx.session, "protocol_version", None) in MODERN_PROTOCOL_VERSIONS
        # on the session that serves this client's calls: the one whose resources change
        backend = await live[0].session_for(connection, modern=modern)
        key = (backend.session_key, original)
        sub = self._subs.get(key)
        if sub is None:
            try:
                await backend.request(lambda s: s.subscribe_resource(original))
            except BackendError as exc:
                raise MCPError(types.INTERNAL_ERROR, f"mcp-router: {exc}") from exc
            sub = self._subs[key] = _Subscription(backend, original)
        return sub

    async def subscribe_stream(self, ctx: Any, token: str, exposed_uri: str) -> None:
        """A ``subscriptions/listen`` stream asks for updates of ``exposed_uri``: subscribe on
        its backend (before the stream's acknowledgement). A URI that cannot be subscribed
        is left out: the stream honors it and it never fires."""
        try:
            sub = await self._backend_subscription(ctx, exposed_uri)
        except MCPError as exc:
            logger.info("listen stream: %s", exc.error.message)
            return
        sub.streams[token] = exposed_uri

    async def unsubscribe_stream(self, token: str) -> None:
        """The listen stream ``token`` ended: drop its backend subscriptions no one else uses."""
        for key, sub in list(self._subs.items()):
            if sub.streams.pop(token, None) is not None and sub.unused:
                await self._drop(key, sub)

    async def _drop(self, key: tuple[str, str], sub: _Subscription) -> None:
        del self._subs[key]
        backend = sub.session
        if backend.state is BackendState.CONNECTED:
            try:
                await backend.request(lambda s, u=sub.original_uri: s.unsubscribe_resource(u))
            except (BackendError, MCPError) as exc:
                logger.info("unsubscribe on '%s' failed: %s", sub.backend, exc)

    async def _unsubscribe(
        self, ctx: Any, params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        connection = ctx.session._connection
        found = await self.drop_subscription(connection, params.uri)
        if not found and self.remote_unsubscribe is not None:
            # a replica set: the subscription may be held by the replica it was made on
            await self.remote_unsubscribe(connection, params.uri)
        return types.EmptyResult()

    async def drop_subscription(self, connection: Any, uri: str) -> bool:
        """Forget ``connection``'s subscription to the exposed ``uri``; False if it had none
        here. The backend subscription goes when its last client does."""
        connection_id = id(connection)
        found = False
        for key, sub in list(self._subs.items()):
            entry = sub.clients.get(connection_id)
            if entry is None or entry[1] != uri:
                continue
            found = True
            del sub.clients[connection_id]
            if sub.unused:
                await self._drop(key, sub)
        return found

    async def resubscribe(self, backend: Backend) -> None:
        """After a (re)connection, restore the backend's subscriptions."""
        for (name, original), _sub in list(self._subs.items()):
            if name != backend.session_key:
                continue
            try:
                await backend.request(lambda s, u=original: s.subscribe_resource(u))
            except (BackendError, MCPError) as exc:
                logger.warning("re-subscribing %s on '%s' failed: %s", original, name, exc)
        if self._backend_level is not None:
            await self._set_backend_level(backend, self._backend_level)

    async def _resource_updated(self, backend: Backend, uri: str) -> None:
        sub = self._subs.get((backend.session_key, uri))
        if sub is None:
            return
        if sub.streams and self.publish_updated is not None:
            # One event per exposed URI: the bus hands it to every stream that asked.
            for exposed in set(sub.streams.values()):
                await self.publish_updated(exposed)
        for connection_id, (ref, exposed) in list(sub.clients.items()):
            connection = ref()
            if connection is None:
                del sub.clients[connection_id]
                continue
            try:
                await connection.send_resource_updated(exposed)
            except Exception as exc:  # the client went away
                logger.debug("resources/updated to a closed client dropped: %s", exc)
                del sub.clients[connection_id]

    # ------------------------------------------------------------------ log levels

    async def _fan_out_level(self, level: str) -> None:
        if self._backend_level is not None and not level_allows(self._backend_level, level):
            return  # backends already send at least this much; clients are filtered here
        if self._backend_level == level:
            return
        self._backend_level = level
        for backend in self.manager.backends.values():
            if backend.state is BackendState.CONNECTED:
                await self._set_backend_level(backend, level)

    @staticmethod
    async def _set_backend_level(backend: Backend, level: str) -> None:
        caps = backend.capabilities
        if caps is None or caps.logging is None:
            return
        try:
            await backend.request(lambda s: s.set_logging_level(level))  # type: ignore[arg-type]
        except (BackendError, MCPError) as exc:
            logger.info("logging/setLevel on '%s' failed: %s", backend.name, exc)

    # ------------------------------------------------------------------ backend messages

    async def on_backend_message(self, backend: Backend, message: Any) -> None:
        """A notification from a backend that is not a list change."""
        if isinstance(message, types.LoggingMessageNotificationParams):
            call = backend.calls.resolve()
            if call is not None and level_allows(client_log_level(call.session), message.level):
                try:
                    await call.log(message)
                except Exception as exc:
                    logger.debug("log relay to a closed client dropped: %s", exc)
            return
        if isinstance(message, types.ResourceUpdatedNotification):
            await self._resource_updated(backend, message.params.uri)

    # ------------------------------------------------------------------ completions

    async def _complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: types.CompletionArgument,
        context: types.CompletionContext | None,
    ) -> types.Completion | None:
        index = self.manager.index
        if isinstance(ref, types.PromptReference):
            what, known = ref.name, ref.name in index.prompts
        else:
            what, known = ref.uri, ref.uri in index.templates
        if known and self.check is not None:
            self.check("completion/complete", what)  # a refused name looks unknown
        return await self.entry.complete(_current_context(), ref, argument, context)


def _current_context() -> Any:
    try:
        return get_context()
    except RuntimeError:
        return None
