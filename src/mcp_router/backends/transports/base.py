"""What every backend transport shares: the transport interface, limits and error marks.

- `BackendTransport`: one per `Backend`, for its whole life. Entering it acquires what outlives
  a session (the HTTP transport's pooled client); `connect()` opens one session's streams.
  `BackendTransport.connect` wraps every transport's streams the same way:
  the read stream is observed (the supervisor learns at once when a connection ends; a line
  that is not valid JSON-RPC but carries a response id fails that request at once), and the
  courtesy ``notifications/cancelled`` the SDK writes for an abandoned request is sent from a
  background task, so a backend that stopped reading can never hold a caller past its timeout.
- Router-synthesised errors (``ErrorData.data = {ROUTER_MARK: kind}``), so `Backend.request`
  can tell them from errors the backend sent.
- `TransportLimits`: the size limits applied to what a backend sends.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import mcp_types as types
from anyio.abc import TaskGroup
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from mcp_router.config.models import BackendConfig

if TYPE_CHECKING:
    from mcp_router.settings import RouterSettings

logger = logging.getLogger("mcp_router.backend")

# Marks errors the router synthesised itself (in ``ErrorData.data``).
ROUTER_MARK = "mcp_router"
NOT_REACHED = "not_reached"
INVALID_RESPONSE = "invalid_response"
SESSION_EXPIRED = "session_expired"
CONNECTION_LOST = "connection_lost"
OVER_CAPACITY = "over_capacity"
MESSAGE_TOO_LARGE = "message_too_large"

_SNIPPET = 200
# The SDK's legacy SSE client parses events with a fixed 1 MiB cap (not configurable).
SSE_EVENT_LIMIT = 1024 * 1024
# How much of an over-limit message is kept to read its envelope (jsonrpc, id, method).
ENVELOPE_PREFIX = 4096
# Bound on the background write of a courtesy cancel: it is a courtesy, never worth a wait.
_CANCEL_WRITE_SECONDS = 5.0
_MAX_PENDING_CANCELS = 64


@dataclass(frozen=True)
class TransportLimits:
    """Bounds on what one backend may send (`RouterSettings` ``MCP_MAX_MESSAGE_BYTES`` etc.)."""

    max_message_bytes: int = 16 * 1024 * 1024
    stderr_line_bytes: int = 8 * 1024
    stderr_lines_per_second: float = 50.0
    stderr_burst: int = 200

    @classmethod
    def from_settings(cls, settings: RouterSettings) -> TransportLimits:
        """The limits the process settings ask for."""
        return cls(
            max_message_bytes=settings.max_message_bytes,
            stderr_line_bytes=settings.backend_stderr_line_bytes,
            stderr_lines_per_second=settings.backend_stderr_lines_per_second,
            stderr_burst=settings.backend_stderr_burst,
        )


class TransportObserver(Protocol):
    """What a transport reports to its backend."""

    def on_eof(self) -> None:
        """The connection ended (the read stream closed or failed)."""

    def on_invalid_message(self, detail: str) -> None:
        """The backend sent something that is not valid JSON-RPC."""

    def on_process_exit(self, returncode: int | None) -> None:
        """A stdio child exited (None: it closed stdout but its exit was not seen)."""

    def on_message_too_large(self, detail: str, *, fatal: bool) -> None:
        """The backend sent a message over the size limit; ``fatal``: the session is unusable."""


def router_error(message: str, kind: str) -> types.ErrorData:
    """An error the router synthesises for a request, marked so it is recognised later."""
    return types.ErrorData(code=types.INTERNAL_ERROR, message=message, data={ROUTER_MARK: kind})


def router_error_kind(error: types.ErrorData) -> str | None:
    """The kind of a router-synthesised error (`NOT_REACHED`, ...); None for backend errors."""
    data = error.data
    if isinstance(data, dict):
        kind = data.get(ROUTER_MARK)
        if isinstance(kind, str):
            return kind
    return None


def snippet(text: str) -> str:
    """``text`` stripped and cut to a length fit for a log line or an error message."""
    text = text.strip()
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def format_bytes(n: int) -> str:
    """``16777216`` -> ``"16 MiB"`` (exact binary units where they fit, else bytes)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def too_large_error(backend: str, limit: int, what: str = "a message") -> types.ErrorData:
    """The error a call gets when its answer is over ``MCP_MAX_MESSAGE_BYTES``."""
    return router_error(
        f"backend '{backend}' sent {what} larger than the router's limit of "
        f"{format_bytes(limit)} ({_limit_name(limit)}); it was dropped",
        MESSAGE_TOO_LARGE,
    )


def _limit_name(limit: int) -> str:
    if limit == SSE_EVENT_LIMIT:
        return "the SDK's SSE client cap; MCP_MAX_MESSAGE_BYTES applies up to it"
    return f"MCP_MAX_MESSAGE_BYTES={limit}"


# ---------------------------------------------------------------------------------- envelopes


@dataclass(frozen=True)
class Envelope:
    """The top-level ``id`` and ``method`` of a JSON-RPC message, read from its first bytes."""

    id: types.RequestId | None
    method: str | None
    complete: bool  # the whole top level was read (else more keys may follow)

    @property
    def is_response(self) -> bool:
        """A response or error to one of our requests (has an id, no method)."""
        return self.id is not None and self.method is None


_DECODER = json.JSONDecoder()


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _skip_value(text: str, i: int) -> int | None:
    """Index after the JSON value at ``i``; None when it does not end within ``text``."""
    try:
        _, end = _DECODER.raw_decode(text, i)
    except ValueError:
        return None
    return int(end)


def read_envelope(prefix: bytes) -> Envelope:
    """Read ``id`` and ``method`` of the JSON object that starts ``prefix`` (its first bytes).

    Works on a cut-off message (the router keeps only the head of one that is too large):
    top-level keys are read in order until the prefix ends; nested values are skipped.
    """
    text = prefix[:ENVELOPE_PREFIX].decode("utf-8", "ignore")
    request_id: Any = None
    method: Any = None
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "{":
        return Envelope(None, None, False)
    i += 1
    while True:
        i = _skip_ws(text, i)
        if i < len(text) and text[i] == "}":
            complete = True
            break
        if i >= len(text) or text[i] != '"':
            complete = False
            break
        try:
            key, i = _DECODER.raw_decode(text, i)
        except ValueError:
            complete = False
            break
        i = _skip_ws(text, i)
        if i >= len(text) or text[i] != ":":
            complete = False
            break
        i = _skip_ws(text, i + 1)
        end = _skip_value(text, i)
        if end is None:
            complete = False
            break
        if key in ("id", "method"):
            value = json.loads(text[i:end])
            if key == "id":
                request_id = value
            else:
                method = value
            if request_id is not None and method is not None:
                complete = False  # a request: nothing more is needed (params may be large)
                break
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i += 1
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    if not isinstance(method, str):
        method = None
    return Envelope(request_id, method, complete)


# ---------------------------------------------------------------------------------- streams


def invalid_message(exc: Exception) -> tuple[types.RequestId | None, str]:
    """The response id an invalid message carried (if any) and a short description of it.

    Pydantic reports the parsed object as the input of the "missing field" errors of the
    union members, which is where a response's ``id`` can be read back.
    """
    if not isinstance(exc, ValidationError):
        return None, snippet(f"{type(exc).__name__}: {exc}")
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        raw = errors[0]["input"]
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
        return None, f"not JSON: {snippet(text)!r}"
    message: Any = None
    for error in errors:
        candidate = error.get("input")
        if isinstance(candidate, dict):
            message = candidate
            break
    if not isinstance(message, dict):
        return None, f"not a JSON-RPC message: {snippet(str(errors[0]['input']))}"
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    if "method" in message or ("result" not in message and "error" not in message):
        request_id = None  # not a response: nothing of ours waits for it
    return request_id, f"invalid JSON-RPC: {snippet(str(message))}"


class ObservedReadStream:
    """Wraps a transport's read stream: reports EOF and invalid messages to the backend."""

    def __init__(self, inner: Any, observer: TransportObserver) -> None:
        self._inner = inner
        self._observer = observer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __aiter__(self) -> ObservedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._inner.__anext__()
        except BaseException:
            self._observer.on_eof()
            raise
        return self._check(item) if isinstance(item, Exception) else item

    async def receive(self) -> Any:
        try:
            item = await self._inner.receive()
        except BaseException:
            self._observer.on_eof()
            raise
        return self._check(item) if isinstance(item, Exception) else item

    def _check(self, exc: Exception) -> Any:
        request_id, detail = invalid_message(exc)
        self._observer.on_invalid_message(detail)
        if request_id is None:
            return exc  # the session logs it; a caller waiting for an answer will time out
        # The backend answered this request with something unusable: fail that request now.
        error = router_error(f"the backend sent an invalid response ({detail})", INVALID_RESPONSE)
        return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> ObservedReadStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> Any:
        self._observer.on_eof()
        return await self._inner.__aexit__(*exc)


class CourtesyWriteStream:
    """Wraps a transport's write stream so a courtesy cancel never waits on the backend.

    The SDK writes ``notifications/cancelled`` when a request is abandoned (timed out, or
    its caller cancelled) and waits for that write, shielded, up to 5 s; a backend that
    stopped reading (a full stdin pipe, an HTTP server that accepts but never answers) would
    hold the caller that long. Here the write runs in a background task, bounded, and the
    caller goes at once. Everything else is written as before.
    """

    def __init__(self, inner: Any, tg: TaskGroup, backend: str) -> None:
        self._inner = inner
        self._tg = tg
        self._backend = backend
        self._pending = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send(self, item: Any) -> None:
        message = getattr(item, "message", None)
        if getattr(message, "method", None) == "notifications/cancelled":
            if self._pending >= _MAX_PENDING_CANCELS:
                logger.debug("backend '%s': courtesy cancel dropped (backlog)", self._backend)
                return
            self._pending += 1
            self._tg.start_soon(self._send_cancel, item)
            return
        await self._inner.send(item)

    async def _send_cancel(self, item: Any) -> None:
        try:
            with anyio.move_on_after(_CANCEL_WRITE_SECONDS) as scope:
                await self._inner.send(item)
            if scope.cancelled_caught:
                logger.info(
                    "backend '%s': courtesy cancel not sent within %gs (not reading)",
                    self._backend,
                    _CANCEL_WRITE_SECONDS,
                )
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the session is gone: nothing left to cancel
        finally:
            self._pending -= 1

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> CourtesyWriteStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> Any:
        return await self._inner.__aexit__(*exc)


# ---------------------------------------------------------------------------------- interface


class BackendTransport(ABC):
    """How the router talks to one backend; subclassed once per transport (see the package).

    ``async with transport:`` holds what outlives a session for the backend's whole life;
    ``transport.connect(observer)`` opens one session's (read, write) streams.
    """

    name: str = ""

    def __init__(self, config: BackendConfig, limits: TransportLimits) -> None:
        self.config = config
        self.limits = limits

    async def __aenter__(self) -> BackendTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    @asynccontextmanager
    async def connect(self, observer: TransportObserver) -> AsyncIterator[tuple[Any, Any]]:
        """Open one session's streams, observed (see the module docstring)."""
        async with anyio.create_task_group() as tg:
            try:
                async with self.open(observer, tg) as (read_stream, write_stream):
                    yield (
                        ObservedReadStream(read_stream, observer),
                        CourtesyWriteStream(write_stream, tg, self.config.name),
                    )
            finally:
                tg.cancel_scope.cancel()  # pending courtesy writes: the session is over

    @abstractmethod
    def open(self, observer: TransportObserver, tg: TaskGroup) -> Any:
        """An async context manager of the transport's own (read, write) streams.

        ``tg`` lives as long as the session (for background work the session needs).
        """
