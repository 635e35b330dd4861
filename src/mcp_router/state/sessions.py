"""Legacy (handshake-era) streamable-HTTP sessions shared by a replica set through Redis.

The SDK's session manager keeps each session in its process (``_server_instances``: session
id -> transport, whose server task holds the ``Connection`` with the client's initialize
params). Here a session initialized on one replica is written to Redis, and a request for an
id this replica does not hold, but Redis knows, re-creates the session locally in the
initialized state before the SDK sees the request: a transport with that id, registered in the
manager's table, served by the SDK's own dispatcher and runner over a ``Connection`` whose
client params, protocol version and shared per-connection state are restored. The SDK still
does the protocol; this module only keeps and restores state and routes what must reach
another replica:

- **records**: ``mcp-router:session:<id>`` (JSON: initialize params, negotiated version,
  credential digest, shared ``connection.state`` entries such as the log level), expiring
  after ``MCP_SESSION_IDLE_SECONDS`` without a request; every request refreshes it (GETEX),
  which also tells a replica that a session was deleted or expired elsewhere;
- **GET streams**: ``mcp-router:stream:<id>`` names the replica holding the client's GET
  stream; a standalone notification raised elsewhere (``resources/updated``) is published
  to that replica's channel ``mcp-router:replica:<replica id>`` and written there.
  ``list_changed`` is not forwarded: every replica sees the backends' changes itself;
- **server-to-client requests** (sampling, elicitation, roots): their ids are recorded in
  ``mcp-router:pending:<id>:<request id>`` -> replica before the client can see them; an
  answer POSTed to another replica is published to the owner, which feeds it to its own
  transport as the POST it would have received;
- **DELETE** removes the record and tells every replica (``mcp-router:sessions:ended``) to
  drop its copy.

Redis down: requests of sessions held here are served as before; new sessions and sessions
held elsewhere are refused with 503 and a message naming the store, until it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from anyio.abc import TaskStatus
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.connection import Connection
from mcp.server.runner import ServerRunner, serve_connection
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp_types import InitializeRequestParams
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from redis.exceptions import RedisError

from mcp_router.asgi import header, read_body, replay_body, send_jsonrpc_error
from mcp_router.state.store import StateStore, StateUnavailable

__all__ = ["SessionFront", "SessionRecord", "SharedSessions"]

logger = logging.getLogger("mcp_router.state")

ASGIApp = Any
Scope = dict[str, Any]
# A server-to-client request waits at most this long for its answer to be routed back.
PENDING_TTL_SECONDS = 600
_SESSION_HEADER = MCP_SESSION_ID_HEADER.lower().encode("latin-1")
_VERSION_HEADER = MCP_PROTOCOL_VERSION_HEADER.lower().encode("latin-1")


@dataclass
class SessionRecord:
    """What a replica needs to serve a session it did not initialize."""

    client_params: dict[str, Any]
    protocol_version: str
    owner: str | None  # digest of the credential that opened it (None: no auth)
    created_by: str
    state: dict[str, Any] = field(default_factory=dict)  # shared connection.state entries

    def dumps(self) -> bytes:
        """The JSON stored in Redis."""
        return orjson.dumps(self.__dict__)

    @classmethod
    def loads(cls, raw: bytes) -> SessionRecord:
        """Back from Redis."""
        return cls(**orjson.loads(raw))


def _owner_digest(scope: Scope) -> tuple[Any, str | None]:
    """(the SDK's authorization context for the request, a digest of it to store)."""
    user = scope.get("user")
    if not isinstance(user, AuthenticatedUser):
        return None, None
    context = authorization_context(user)
    return context, _digest(context)


def _digest(context: Any) -> str:
    return hashlib.sha256(orjson.dumps(context, option=orjson.OPT_SORT_KEYS)).hexdigest()


def secrets_token() -> str:
    """A reply channel's unique part."""
    return uuid.uuid4().hex


def _header(scope: Scope, name: bytes) -> str | None:
    value = header(scope, name)
    return None if value is None else value.decode("latin-1")


def _sse_messages(body: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC messages in a chunk of an SSE response (one event per chunk, usually)."""
    out: list[dict[str, Any]] = []
    for event in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = b"\n".join(
            line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")
        )
        if not data:
            continue
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(message, dict):
            out.append(message)
    return out


class RoutedOutbound:
    """A session connection's standalone channel, reaching the GET stream wherever it is held.

    Wraps the SDK dispatcher that ``Connection.outbound`` is: requests go through unchanged;
    a notification goes to the local GET stream when this replica holds it, else is published
    to the replica that does. ``list_changed`` stays local: every replica sends its own.
    """

    def __init__(self, inner: Any, session_id: str, shared: SharedSessions) -> None:
        self.inner = inner
        self.session_id = session_id
        self.shared = shared

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: Any = None
    ) -> dict[str, Any]:
        """A standalone server-to-client request (its answer is routed by its id)."""
        return await self.inner.send_raw_request(method, params, opts)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: Any = None) -> None:
        """Deliver on this replica's GET stream, or publish to the replica holding it."""
        if self.shared.holds_stream(self.session_id) or method.endswith("/list_changed"):
            await self.inner.notify(method, params, opts)
            return
        if not await self.shared.forward_notification(self.session_id, method, params):
            await self.inner.notify(method, params, opts)


class SharedSessions:
    """Keeps this replica's legacy sessions in Redis and restores the others' on demand.

    ``shared_keys`` are the ``connection.state`` entries that follow a session (FastMCP's
    log level, the router's subscriptions); ``on_connection`` is told of every session
    connection this replica serves (the router's registry, to broadcast ``list_changed``).
    """

    def __init__(
        self,
        store: StateStore,
        *,
        idle_seconds: float,
        shared_keys: tuple[str, ...] = (),
        on_connection: Callable[[Connection], None] | None = None,
    ) -> None:
        self.store = store
        self.ttl = max(1, int(idle_seconds))
        self.shared_keys = shared_keys
        self.on_connection = on_connection
        self.replica_id = store.replica_id
        self._connections: weakref.WeakValueDictionary[str, Connection] = (
            weakref.WeakValueDictionary()
        )
        self._shared_seen: dict[str, dict[str, Any]] = {}
        self._streams: dict[str, int] = {}  # session id -> GET streams open here
        self._locate: Callable[[], Any] | None = None
        self.local_app: ASGIApp | None = None  # the MCP app behind SessionFront
        self._path = "/mcp"
        # (connection, exposed URI) -> drop that subscription if this replica holds it
        self.on_remote_unsubscribe: Callable[[Connection, str], Awaitable[Any]] | None = None
        self.restored = 0
        self.forwarded_answers = 0
        self.forwarded_notifications = 0

    # ------------------------------------------------------------------ keys

    def _session_key(self, sid: str) -> str:
        return self.store.key("session", sid)

    def _ended_key(self, sid: str) -> str:
        return self.store.key("ended", sid)

    def _stream_key(self, sid: str) -> str:
        return self.store.key("stream", sid)

    def _pending_key(self, sid: str, request_id: Any) -> str:
        return self.store.key("pending", sid, str(request_id))

    def _round_key(self, request_state: str) -> str:
        digest = hashlib.sha256(request_state.encode()).hexdigest()
        return self.store.key("round", digest)

    def _channel(self, replica_id: str) -> str:
        return self.store.key("replica", replica_id)

    @property
    def _ended_channel(self) -> str:
        return self.store.key("sessions", "ended")

    @property
    def _unsubscribe_channel(self) -> str:
        return self.store.key("sessions", "unsubscribe")

    # ------------------------------------------------------------------ wiring

    def bind(self, *, path: str, locate: Callable[[], Any]) -> None:
        """Where the MCP endpoint is, and how to find its SDK session manager (the app is
        built around the :class:`SessionFront` middleware, so it is found lazily)."""
        self._locate = locate
        self._path = path

    def manager(self) -> Any:
        """The SDK's session manager (it exists while the app's lifespan runs)."""
        endpoint = self._locate() if self._locate is not None else None
        return getattr(endpoint, "session_manager", None)

    def holds_stream(self, sid: str) -> bool:
        """Whether this replica holds the session's GET stream now."""
        return self._streams.get(sid, 0) > 0

    async def server_middleware(self, ctx: Any, call_next: Any) -> Any:
        """SDK server middleware: learn each session's connection, save shared state changes."""
        connection = getattr(getattr(ctx, "session", None), "_connection", None)
        sid = getattr(connection, "session_id", None)
        if connection is None or sid is None:
            return await call_next(ctx)
        if self._connections.get(sid) is not connection:
            self._adopt(sid, connection)
        try:
            return await call_next(ctx)
        finally:
            await self._save_shared_state(sid, connection)

    def _adopt(self, sid: str, connection: Connection) -> None:
        """Route this connection's notifications, and give its server-to-client request ids
        a random start: copies of one session on several replicas must not reuse an id."""
        self._connections[sid] = connection
        outbound = connection.outbound
        if isinstance(outbound, JSONRPCDispatcher):
            if outbound._next_id == 0:  # the SDK's counter; ids stay below 2**53 (JSON safe)
                outbound._next_id = random.SystemRandom().randrange(1, 2**50)
            connection.outbound = RoutedOutbound(outbound, sid, self)
        if self.on_connection is not None:
            self.on_connection(connection)

    async def _save_shared_state(self, sid: str, connection: Connection) -> None:
        current = {k: connection.state[k] for k in self.shared_keys if k in connection.state}
        if current == self._shared_seen.get(sid, {}):
            return
        self._shared_seen[sid] = current
        try:
            raw = await self.store.call("get", self._session_key(sid))
            if raw is None:
                return
            record = SessionRecord.loads(raw)
            record.state = current
            await self.store.call("set", self._session_key(sid), record.dumps(), keepttl=True)
        except StateUnavailable:
            self._shared_seen.pop(sid, None)  # try again on the next request

    # ------------------------------------------------------------------ sessions

    async def record_new(self, sid: str, body: bytes, owner: str | None) -> None:
        """Write a just-initialized session (raises StateUnavailable)."""
        try:
            params = orjson.loads(body).get("params") or {}
        except (orjson.JSONDecodeError, AttributeError):
            return
        _, version = ServerRunner._negotiate_initialize(params)
        record = SessionRecord(
            client_params=params, protocol_version=version, owner=owner, created_by=self.replica_id
        )
        await self.store.call("set", self._session_key(sid), record.dumps(), ex=self.ttl)

    async def lookup(self, sid: str) -> SessionRecord | None:
        """The session's record, refreshing its idle TTL (raises StateUnavailable)."""
        raw = await self.store.call("getex", self._session_key(sid), ex=self.ttl)
        return None if raw is None else SessionRecord.loads(raw)

    def apply_shared_state(self, sid: str, record: SessionRecord) -> None:
        """Bring a local copy up to date with what another replica changed (e.g. log level)."""
        connection = self._connections.get(sid)
        if connection is None or self._shared_seen.get(sid, {}) == record.state:
            return
        for key in self.shared_keys:
            if key in record.state:
                connection.state[key] = record.state[key]
            else:
                connection.state.pop(key, None)
        self._shared_seen[sid] = dict(record.state)

    async def restore(self, sid: str, record: SessionRecord, requestor: Any) -> bool:
        """Re-create the session here, initialized, before the SDK serves its request."""
        sm = self.manager()
        if sm is None or sm._task_group is None:
            return False
        async with sm._session_creation_lock:
            if sid in sm._server_instances:
                return True
            if sm.max_sessions is not None and len(sm._server_instances) >= sm.max_sessions:
                return False
            transport = StreamableHTTPServerTransport(
                mcp_session_id=sid,
                is_json_response_enabled=sm.json_response,
                event_store=sm.event_store,
                security_settings=sm.security_settings,
                retry_interval=sm.retry_interval,
                idle_timeout=sm.session_idle_timeout,
            )
            sm._server_instances[sid] = transport
            if requestor is not None:
                sm._session_owners[sid] = requestor
        try:
            await sm._task_group.start(self._serve_restored, sm, transport, record)
        except Exception:
            await sm._discard_session(sid, transport)
            raise
        self.restored += 1
        logger.info("session %s restored from the state store on replica %s", sid, self.replica_id)
        return True

    async def _serve_restored(
        self,
        sm: Any,
        transport: StreamableHTTPServerTransport,
        record: SessionRecord,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """The SDK manager's ``run_server``, with a connection restored instead of a new one."""
        sid = transport.mcp_session_id
        assert sid is not None
        async with transport.connect() as (read_stream, write_stream):
            try:
                idle_scope = transport.idle_scope or anyio.CancelScope()
                with idle_scope:
                    dispatcher: JSONRPCDispatcher[Any] = JSONRPCDispatcher(
                        read_stream, write_stream, inline_methods=frozenset({"initialize"})
                    )
                    connection = Connection.for_loop(
                        dispatcher, session_id=sid, protocol_version_hint=record.protocol_version
                    )
                    connection.client_params = InitializeRequestParams.model_validate(
                        record.client_params, by_name=False
                    )
                    connection.protocol_version = record.protocol_version
                    connection.initialized.set()
                    connection.state.update(record.state)
                    self._shared_seen[sid] = dict(record.state)
                    self._adopt(sid, connection)
                    task_status.started()
                    await serve_connection(
                        sm.app, dispatcher, connection=connection, lifespan_state=sm._lifespan_state
                    )
            except Exception:
                logger.exception("restored session %s crashed", sid)
            finally:
                self._shared_seen.pop(sid, None)
                await sm._discard_session(sid, transport)

    async def drop_local(self, sid: str) -> None:
        """End this replica's copy of a session (deleted or expired elsewhere)."""
        sm = self.manager()
        transport = None if sm is None else sm._server_instances.get(sid)
        if transport is not None:
            await sm._discard_session(sid, transport)

    async def heal(self, sid: str) -> bool:
        """Write the record of a session held here that Redis lost (it restarted empty);
        False when the session was deleted (tombstone) or is not known here."""
        sm = self.manager()
        connection = self._connections.get(sid)
        if sm is None or connection is None or connection.client_params is None:
            return False
        try:
            if await self.store.call("exists", self._ended_key(sid)):
                return False
            owner = sm._session_owners.get(sid)
            record = SessionRecord(
                client_params=connection.client_params.model_dump(
                    by_alias=True, mode="json", exclude_none=True
                ),
                protocol_version=connection.protocol_version,
                owner=None if owner is None else _digest(owner),
                created_by=self.replica_id,
                state={k: connection.state[k] for k in self.shared_keys if k in connection.state},
            )
            await self.store.call("set", self._session_key(sid), record.dumps(), ex=self.ttl)
        except StateUnavailable:
            return True  # keep serving the copy held here
        logger.info(
            "session %s written back to the state store by replica %s", sid, self.replica_id
        )
        return True

    async def forget(self, sid: str) -> None:
        """The client deleted the session: gone from Redis and from every replica (a
        tombstone keeps a replica that missed the message from writing it back)."""
        try:
            await self.store.call("set", self._ended_key(sid), b"1", ex=self.ttl)
            await self.store.call("delete", self._session_key(sid), self._stream_key(sid))
            await self.store.call("publish", self._ended_channel, sid.encode())
        except StateUnavailable:
            logger.warning("session %s deleted here; the state store will expire it", sid)

    # ------------------------------------------------------------------ GET streams

    async def stream_opened(self, sid: str) -> None:
        """This replica now holds the session's GET stream."""
        self._streams[sid] = self._streams.get(sid, 0) + 1
        # Redis down: notifications raised here still reach the stream; other replicas' do not.
        with contextlib.suppress(StateUnavailable):
            await self.store.call("set", self._stream_key(sid), self.replica_id, ex=self.ttl)

    async def stream_closed(self, sid: str) -> None:
        """The GET stream ended."""
        left = self._streams.get(sid, 1) - 1
        if left > 0:
            self._streams[sid] = left
            return
        self._streams.pop(sid, None)
        try:
            if await self.store.call("get", self._stream_key(sid)) == self.replica_id.encode():
                await self.store.call("delete", self._stream_key(sid))
        except StateUnavailable:
            pass

    async def forward_notification(
        self, sid: str, method: str, params: Mapping[str, Any] | None
    ) -> bool:
        """Publish a notification to the replica holding the GET stream; False if none does."""
        try:
            holder = await self.store.call("get", self._stream_key(sid))
            if holder is None or holder.decode() == self.replica_id:
                return False
            message = {"kind": "notify", "sid": sid, "method": method, "params": params}
            await self.store.call("publish", self._channel(holder.decode()), orjson.dumps(message))
        except StateUnavailable:
            return False
        self.forwarded_notifications += 1
        return True

    async def broadcast_unsubscribe(self, connection: Connection, uri: str) -> None:
        """An unsubscribe this replica holds no subscription for: the replica the client
        subscribed through drops it (every replica is told; only that one has it)."""
        sid = connection.session_id
        if sid is None:
            return
        message = {"sid": sid, "uri": uri, "from": self.replica_id}
        with contextlib.suppress(StateUnavailable):
            await self.store.call("publish", self._unsubscribe_channel, orjson.dumps(message))

    # ------------------------------------------------------------------ answers

    async def note_outgoing(self, sid: str, body: bytes) -> None:
        """Record the server-to-client requests in an SSE chunk before the client sees them."""
        for message in _sse_messages(body):
            if "method" in message and "id" in message:
                try:
                    await self.store.call(
                        "set",
                        self._pending_key(sid, message["id"]),
                        self.replica_id,
                        ex=PENDING_TTL_SECONDS,
                    )
                except StateUnavailable:
                    return  # answered here, it still works; elsewhere it cannot be routed

    async def route_answer(self, sid: str, body: bytes) -> bool:
        """An answer (JSON-RPC result/error) for a request another replica sent: publish it
        to that replica. False when it is this replica's, or unknown (served locally)."""
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(message, dict) or "method" in message or "id" not in message:
            return False
        try:
            key = self._pending_key(sid, message["id"])
            owner = await self.store.call("get", key)
            if owner is None:
                return False
            await self.store.call("delete", key)
            if owner.decode() == self.replica_id:
                return False
            envelope = {"kind": "answer", "sid": sid, "body": body.decode()}
            await self.store.call("publish", self._channel(owner.decode()), orjson.dumps(envelope))
        except StateUnavailable:
            return False
        self.forwarded_answers += 1
        return True

    async def _inject_answer(self, sid: str, body: bytes) -> None:
        """Feed an answer routed from another replica to this replica's transport, as the
        POST the client would have sent here (the SDK parses it and resolves the request)."""
        sm = self.manager()
        transport = None if sm is None else sm._server_instances.get(sid)
        if transport is None:
            logger.info("answer for session %s arrived, but the session is gone here", sid)
            return
        connection = self._connections.get(sid)
        version = connection.protocol_version if connection is not None else None
        headers = [
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
            (_SESSION_HEADER, sid.encode("latin-1")),
        ]
        if version is not None:
            headers.append((_VERSION_HEADER, version.encode("latin-1")))
        scope = self._post_scope(headers)

        receive = replay_body(body)

        async def send(_message: dict[str, Any]) -> None:
            return None  # the 202 goes nowhere: the client already got one

        await transport.handle_request(scope, receive, send)

    # ------------------------------------------------------------------ 2026-07-28 rounds

    async def note_rounds(self, body: bytes) -> None:
        """Record which replica holds each multi-round-trip request in a response chunk (the
        round lives in that process until the client's retry comes back with its state)."""
        messages = _sse_messages(body) if b"data:" in body else []
        if not messages:
            with contextlib.suppress(orjson.JSONDecodeError):
                loaded = orjson.loads(body)
                messages = [loaded] if isinstance(loaded, dict) else []
        for message in messages:
            result = message.get("result")
            state = result.get("requestState") if isinstance(result, dict) else None
            if isinstance(state, str):
                with contextlib.suppress(StateUnavailable):
                    await self.store.call(
                        "set", self._round_key(state), self.replica_id, ex=PENDING_TTL_SECONDS
                    )

    async def round_owner(self, body: bytes) -> str | None:
        """The other replica holding the round a retry continues (None: this one, or none)."""
        try:
            params = orjson.loads(body).get("params")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        state = params.get("requestState") if isinstance(params, dict) else None
        if not isinstance(state, str):
            return None
        try:
            owner = await self.store.call("get", self._round_key(state))
        except StateUnavailable:
            return None
        if owner is None or owner.decode() == self.replica_id:
            return None
        return owner.decode()

    async def forward_request(
        self, owner: str, scope: Scope, body: bytes, timeout: float
    ) -> dict[str, Any] | None:
        """Have ``owner`` serve this HTTP request (a retry of its round); its response, or
        None when it does not answer within ``timeout``."""
        reply = self.store.key("reply", self.replica_id, secrets_token())
        pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(reply)
            message = {
                "kind": "http",
                "reply": reply,
                "headers": [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]
                ],
                "body": body.decode("latin-1"),
            }
            await self.store.call("publish", self._channel(owner), orjson.dumps(message))
            with anyio.move_on_after(timeout):
                while True:
                    answer = await pubsub.get_message(timeout=1.0)
                    if answer is not None and answer.get("type") == "message":
                        return dict(orjson.loads(answer["data"]))
        except (RedisError, OSError) as exc:
            self.store.mark_down(exc)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
        return None

    def _post_scope(self, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        """The ASGI scope of a POST to the MCP endpoint that this replica makes to itself."""
        return {
            "type": "http",
            "method": "POST",
            "path": self._path,
            "raw_path": self._path.encode(),
            "query_string": b"",
            "headers": headers,
            "http_version": "1.1",
            "scheme": "http",
            "server": ("127.0.0.1", 0),
            "client": ("127.0.0.1", 0),
        }

    async def _serve_forwarded(self, message: dict[str, Any]) -> None:
        """Serve a request another replica forwarded here; publish the whole response back."""
        app = self.local_app
        if app is None:
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in message["headers"]]
        body = message["body"].encode("latin-1")
        scope = self._post_scope(headers)
        response: dict[str, Any] = {"status": 500, "headers": [], "body": ""}
        chunks: list[bytes] = []

        receive = replay_body(body)

        async def send(part: dict[str, Any]) -> None:
            if part["type"] == "http.response.start":
                response["status"] = part["status"]
                response["headers"] = [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in part.get("headers", [])
                ]
            elif part["type"] == "http.response.body":
                chunks.append(part.get("body", b""))

        await app(scope, receive, send)
        whole = b"".join(chunks)
        if b'"requestState"' in whole:
            await self.note_rounds(whole)  # a further round of it stays here too
        response["body"] = whole.decode("latin-1")
        with contextlib.suppress(StateUnavailable):
            await self.store.call("publish", message["reply"], orjson.dumps(response))

    # ------------------------------------------------------------------ background

    async def run(self) -> None:
        """Ping the store (the log names it when down), listen to this replica's channel,
        keep the sessions whose GET stream is held here alive in Redis."""
        if not await self.store.ping():
            logger.error(
                "%s; replica %s reports not ready and refuses new sessions until it answers",
                self.store.problem,
                self.replica_id,
            )
        else:
            logger.info(
                "state store %s: replica %s sharing sessions",
                self.store.shown_url(),
                self.replica_id,
            )
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.store.watch)
            tg.start_soon(self._refresh_streams)
            await self._listen(tg)

    async def _refresh_streams(self) -> None:
        # An open GET stream keeps a session alive (as the SDK's idle timer does locally).
        while True:
            await asyncio.sleep(max(1.0, self.ttl / 3))
            for sid in list(self._streams):
                try:
                    await self.store.call("expire", self._session_key(sid), self.ttl)
                    await self.store.call(
                        "set", self._stream_key(sid), self.replica_id, ex=self.ttl
                    )
                except StateUnavailable:
                    break

    async def _listen(self, tg: Any) -> None:
        channels = (self._channel(self.replica_id), self._ended_channel, self._unsubscribe_channel)
        while True:
            pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    tg.start_soon(self._on_message, message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                self.store.mark_down(exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await self.store.wait_recovered()
            await asyncio.sleep(0.2)

    async def _on_message(self, channel: bytes, data: bytes) -> None:
        try:
            if channel.decode() == self._ended_channel:
                await self.drop_local(data.decode())
                return
            message = orjson.loads(data)
            if channel.decode() == self._unsubscribe_channel:
                connection = self._connections.get(message["sid"])
                handler = self.on_remote_unsubscribe
                if message["from"] != self.replica_id and connection and handler:
                    await handler(connection, message["uri"])
                return
            if message["kind"] == "http":
                await self._serve_forwarded(message)
                return
            sid = message["sid"]
            if message["kind"] == "answer":
                await self._inject_answer(sid, message["body"].encode())
            elif message["kind"] == "notify":
                connection = self._connections.get(sid)
                outbound = getattr(connection, "outbound", None)
                inner = getattr(outbound, "inner", outbound)
                if inner is not None:
                    await inner.notify(message["method"], message["params"])
        except Exception:
            logger.exception("state-store message on %s could not be handled", channel)


class SessionFront:
    """ASGI middleware: restores, refreshes, deletes shared sessions and routes answers."""

    def __init__(
        self, app: ASGIApp, shared: SharedSessions, path: str, round_timeout: float = 300.0
    ) -> None:
        self.app = app
        self.shared = shared
        self.path = path
        self.round_timeout = round_timeout
        shared.local_app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        version = _header(scope, _VERSION_HEADER)
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            # 2026-07-28: no protocol session to share, but a multi-round-trip request lives
            # on the replica that started it until the client's retry comes back
            if scope.get("method") == "POST":
                await self._modern(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        sid = _header(scope, _SESSION_HEADER)
        method = scope.get("method")
        if sid is None:
            if method == "POST":
                await self._open(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        await self._continue(sid, method, scope, receive, send)

    async def _modern(self, scope: Scope, receive: Any, send: Any) -> None:
        shared = self.shared
        body = await read_body(receive)
        owner = await shared.round_owner(body) if b"requestState" in body else None
        if owner is not None:
            response = await shared.forward_request(owner, scope, body, self.round_timeout)
            if response is None:
                await send_jsonrpc_error(
                    send, 503, f"mcp-router: replica {owner} holding this request did not answer"
                )
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": response["status"],
                    "headers": [
                        (k.encode("latin-1"), v.encode("latin-1")) for k, v in response["headers"]
                    ],
                }
            )
            await send({"type": "http.response.body", "body": response["body"].encode("latin-1")})
            return

        async def noting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if b'"requestState"' in chunk:
                    await shared.note_rounds(chunk)
            await send(message)

        await self.app(scope, replay_body(body, receive), noting)

    async def _open(self, scope: Scope, receive: Any, send: Any) -> None:
        shared = self.shared
        store = shared.store
        if not store.healthy and not await store.ping():
            await send_jsonrpc_error(
                send, 503, f"mcp-router cannot open a session: {store.problem}"
            )
            return
        body = await read_body(receive)
        _, owner = _owner_digest(scope)
        refused = False

        async def record_then_send(message: dict[str, Any]) -> None:
            nonlocal refused
            if refused:
                return
            if message["type"] == "http.response.start" and message["status"] < 400:
                sid = next(
                    (
                        v.decode("latin-1")
                        for k, v in message.get("headers", [])
                        if k == _SESSION_HEADER
                    ),
                    None,
                )
                if sid is not None:
                    try:
                        await shared.record_new(sid, body, owner)
                    except StateUnavailable as exc:
                        refused = True
                        await shared.drop_local(sid)
                        await send_jsonrpc_error(
                            send, 503, f"mcp-router cannot open a session: {exc}"
                        )
                        return
            await send(message)

        await self.app(scope, replay_body(body, receive), record_then_send)

    async def _continue(self, sid: str, method: Any, scope: Scope, receive: Any, send: Any) -> None:
        shared = self.shared
        sm = shared.manager()
        local = sm is not None and sid in sm._server_instances
        try:
            if local and not shared.store.healthy:
                # known down (the watcher pings it): serve the copy held here without waiting
                # on a store that may not answer for seconds
                raise StateUnavailable(shared.store.problem or "state store unreachable")
            record = await shared.lookup(sid)
        except StateUnavailable as exc:
            if not local:
                await send_jsonrpc_error(
                    send, 503, f"mcp-router cannot resume session {sid[:64]} here: {exc}"
                )
                return
            record = None  # serve the copy held here, as if Redis were not configured
        else:
            if record is None:
                # deleted elsewhere: the SDK answers 404 once it is gone here; lost by a Redis
                # that restarted empty: written back from the copy held here
                if local and not await shared.heal(sid):
                    await shared.drop_local(sid)
            elif not local:
                requestor, owner = _owner_digest(scope)
                # another credential: not restored, the SDK answers 404 as for a foreign id
                if owner == record.owner and not await shared.restore(sid, record, requestor):
                    await send_jsonrpc_error(
                        send,
                        503,
                        f"mcp-router replica {shared.replica_id} holds MCP_MAX_SESSIONS sessions "
                        "and cannot take this one; retry (another replica may)",
                    )
                    return
            else:
                shared.apply_shared_state(sid, record)
        if method == "DELETE":
            await self.app(scope, receive, send)
            await shared.forget(sid)
            return
        if method == "GET":
            await shared.stream_opened(sid)
            try:
                await self.app(scope, receive, self._noting(sid, send))
            finally:
                with anyio.CancelScope(shield=True):
                    await shared.stream_closed(sid)
            return
        if method != "POST":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if await shared.route_answer(sid, body):
            await send(
                {
                    "type": "http.response.start",
                    "status": 202,
                    "headers": [(_SESSION_HEADER, sid.encode("latin-1"))],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, replay_body(body, receive), self._noting(sid, send))

    def _noting(self, sid: str, send: Any) -> Any:
        """``send``, recording server-to-client requests before they leave."""
        shared = self.shared

        async def noting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if b'"method"' in body and b'"id"' in body:
                    await shared.note_outgoing(sid, body)
            await send(message)

        return noting
