"""Client transports to one backend: stdio (a supervised child), streamable HTTP and SSE.

HTTP and SSE use the SDK's transports; stdio has its own small transport on POSIX so the
router holds the child's pid: it needs it to stop the child's whole process group at
shutdown (a server that exits when its stdin closes can leave grandchildren behind, which
the SDK's transport only kills when the leader itself hangs) and to report exit codes.

Three things are added on top of the wire protocol, all without per-message allocations
beyond what the SDK already does:
- the read stream is observed, so the supervisor learns at once when a connection ends;
- a line that is not valid JSON-RPC but carries the id of a response is turned into an error
  response for that id, so the caller waiting for it fails at once with a clear message
  instead of waiting for its timeout; other invalid lines are reported to the backend;
- an HTTP request that could not even connect is answered with a synthetic JSON-RPC error
  marked "not reached" instead of tearing the whole session down, so the router knows the
  request surely did not run and may fail over even for tools that are not idempotent.
A stdio child's stderr is forwarded line by line into the router's log.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, Protocol

import anyio
import httpx2
import mcp_types as types
from anyio.abc import Process
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from mcp_router.backends.http_pool import KeepAliveTransport
from mcp_router.config.models import BackendConfig

logger = logging.getLogger("mcp_router.backend")

# Backends may hold a response stream open for long-running calls; the per-request timeout
# is enforced by the session, so the HTTP read timeout only guards against dead sockets.
_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)

# Marks errors the router synthesised itself (in ``ErrorData.data``), so `Backend.request`
# can tell them from errors the backend sent.
ROUTER_MARK = "mcp_router"
NOT_REACHED = "not_reached"
INVALID_RESPONSE = "invalid_response"
SESSION_EXPIRED = "session_expired"
CONNECTION_LOST = "connection_lost"
OVER_CAPACITY = "over_capacity"
_SESSION_HEADER = "mcp-session-id"

# stdio shutdown, as the MCP spec orders it: close stdin, wait, SIGTERM the group, wait, SIGKILL.
_EXIT_GRACE = 2.0
_TERM_GRACE = 2.0
_EXIT_POLL = 0.01
_SNIPPET = 200


class TransportObserver(Protocol):
    """What a transport reports to its backend."""

    def on_eof(self) -> None:
        """The connection ended (the read stream closed or failed)."""

    def on_invalid_message(self, detail: str) -> None:
        """The backend sent something that is not valid JSON-RPC."""

    def on_process_exit(self, returncode: int | None) -> None:
        """A stdio child exited (None: it closed stdout but its exit was not seen)."""


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


def _snippet(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def _invalid_message(exc: Exception) -> tuple[types.RequestId | None, str]:
    """The response id an invalid message carried (if any) and a short description of it.

    Pydantic reports the parsed object as the input of the "missing field" errors of the
    union members, which is where a response's ``id`` can be read back.
    """
    if not isinstance(exc, ValidationError):
        return None, _snippet(f"{type(exc).__name__}: {exc}")
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        raw = errors[0]["input"]
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
        return None, f"not JSON: {_snippet(text)!r}"
    message: Any = None
    for error in errors:
        candidate = error.get("input")
        if isinstance(candidate, dict):
            message = candidate
            break
    if not isinstance(message, dict):
        return None, f"not a JSON-RPC message: {_snippet(str(errors[0]['input']))}"
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    if "method" in message or ("result" not in message and "error" not in message):
        request_id = None  # not a response: nothing of ours waits for it
    return request_id, f"invalid JSON-RPC: {_snippet(str(message))}"


class _ObservedReadStream:
    """Wraps a transport's read stream: reports EOF and invalid messages to the backend."""

    def __init__(self, inner: Any, observer: TransportObserver) -> None:
        self._inner = inner
        self._observer = observer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __aiter__(self) -> _ObservedReadStream:
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
        request_id, detail = _invalid_message(exc)
        self._observer.on_invalid_message(detail)
        if request_id is None:
            return exc  # the session logs it; a caller waiting for an answer will time out
        # The backend answered this request with something unusable: fail that request now.
        error = router_error(f"the backend sent an invalid response ({detail})", INVALID_RESPONSE)
        return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _ObservedReadStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> Any:
        self._observer.on_eof()
        return await self._inner.__aexit__(*exc)


# ---------------------------------------------------------------------------------- stdio


def _forward_stderr(fd: int, backend: str) -> None:
    """Log each line the child writes to stderr (runs in a daemon thread until EOF)."""
    child_log = logging.getLogger(f"mcp_router.backend.{backend}")
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as pipe:
        for line in pipe:
            line = line.rstrip()
            if line:
                child_log.info("[%s stderr] %s", backend, line)


def _parse_line(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValidationError as exc:
        return exc


async def _wait_exit(process: Process, timeout: float) -> bool:
    # Not process.wait(): on asyncio it also waits for the pipes, which a grandchild may hold.
    with anyio.move_on_after(timeout):
        while process.returncode is None:  # noqa: ASYNC110 - returncode has no event to wait on
            await anyio.sleep(_EXIT_POLL)
        return True
    return False


async def _stop_process_group(process: Process, name: str) -> None:
    """Close stdin, give the child time to exit, then stop its whole process group."""
    from mcp.os.posix.utilities import terminate_posix_process_tree

    if process.stdin is not None:
        with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()
    if not await _wait_exit(process, _EXIT_GRACE):
        logger.info("backend '%s': child %d still running; terminating it", name, process.pid)
    # Always, even when the leader exited on its own: members of its group (grandchildren that
    # ignore stdin) would otherwise outlive the router. SIGTERM, then SIGKILL after the grace.
    await terminate_posix_process_tree(process, _TERM_GRACE)
    if not await _wait_exit(process, _TERM_GRACE):
        logger.warning("backend '%s': child %d survived SIGKILL", name, process.pid)
    if process.stdout is not None:
        with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdout.aclose()


@asynccontextmanager
async def _posix_stdio(config: BackendConfig, observer: TransportObserver) -> AsyncIterator[Any]:
    """Spawn the server in a new process group and speak newline-delimited JSON-RPC."""
    assert config.command is not None
    err_read, err_write = os.pipe()
    try:
        process = await anyio.open_process(
            [config.command, *config.args],
            env=get_default_environment() | dict(config.env),
            cwd=config.cwd,
            stderr=err_write,
            start_new_session=True,  # its own group: killpg reaches every descendant
        )
    except BaseException:
        os.close(err_read)
        os.close(err_write)
        raise
    os.close(err_write)  # the child holds its copy; the reader thread sees EOF when it is gone
    threading.Thread(
        target=_forward_stderr,
        args=(err_read, config.name),
        daemon=True,
        name=f"stderr-{config.name}",
    ).start()
    logger.info("backend '%s': started %s (pid %d)", config.name, config.command, process.pid)

    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    async def reader() -> None:
        buffer = b""
        async with read_writer:
            try:
                async for chunk in stdout:
                    lines = (buffer + chunk).split(b"\n")
                    buffer = lines.pop()
                    for line in lines:
                        if line.strip():
                            await read_writer.send(_parse_line(line))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                pass  # our own shutdown, or the session went away
            # stdout ended: the child is exiting. Report how, before the session sees EOF.
            await _wait_exit(process, 0.5)
            observer.on_process_exit(process.returncode)

    async def writer() -> None:
        try:
            async with write_reader:
                async for message in write_reader:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await stdin.send((data + "\n").encode())
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            # The child stopped reading: end the session rather than leave requests hanging.
            await read_writer.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        tg.start_soon(writer)
        try:
            yield read_stream, write_stream
        finally:
            # The child must be stopped even when we are being cancelled; every wait is bounded.
            with anyio.CancelScope(shield=True):
                write_stream.close()
                read_stream.close()
                await _stop_process_group(process, config.name)
            tg.cancel_scope.cancel()


@asynccontextmanager
async def _sdk_stdio(config: BackendConfig) -> AsyncIterator[Any]:
    """The SDK's stdio transport (used where there are no POSIX process groups)."""
    assert config.command is not None
    params = StdioServerParameters(
        command=config.command,
        args=list(config.args),
        env=dict(config.env) or None,
        cwd=config.cwd,
        encoding_error_handler="replace",
    )
    read_fd, write_fd = os.pipe()
    threading.Thread(
        target=_forward_stderr,
        args=(read_fd, config.name),
        daemon=True,
        name=f"stderr-{config.name}",
    ).start()
    errlog = os.fdopen(write_fd, "w")
    try:
        async with stdio_client(params, errlog=errlog) as streams:
            yield streams
    finally:
        errlog.close()


# ---------------------------------------------------------------------------------- HTTP


class _BackendHTTPClient(httpx2.AsyncClient):
    """The per-backend HTTP client, which makes two HTTP-level facts explicit for the router.

    - A POST that cannot connect gets a "not reached" answer, and one whose connection breaks
      before the answer a "connection lost" answer. Without this the SDK's transport lets the
      error escape its task group, which ends the session and fails every request in flight
      on it as "connection closed", with no way to tell that this one never left.
    - A POST whose session the server no longer knows (404 with a session id, as the spec
      says; some servers answer 400 and name the session) gets a "session expired" answer, so
      the backend re-initializes and runs the request again: it surely did not run.
    """

    async def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        try:
            response = await super().send(request, **kwargs)
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            if request.method != "POST":
                raise
            url = request.url
            where = f"{url.host}:{url.port}" if url.port else url.host
            return _router_response(
                request, f"cannot connect to {where} ({_exc_text(exc)})", NOT_REACHED
            )
        except httpx2.TransportError as exc:
            if request.method != "POST":
                raise
            # Sent, but the connection broke before an answer: it may have run. Fail only this
            # request; left to escape, the error would end the session and every other
            # request in flight on it.
            return _router_response(
                request, f"connection lost during the request ({_exc_text(exc)})", CONNECTION_LOST
            )
        if (
            request.method == "POST"
            and response.status_code in (400, 404)
            and _SESSION_HEADER in request.headers
        ):
            body = await response.aread()
            await response.aclose()
            if response.status_code == 404 or b"session" in body.lower():
                detail = _snippet(body.decode("utf-8", "replace")) or "no body"
                return _router_response(
                    request,
                    f"session expired: HTTP {response.status_code} ({detail})",
                    SESSION_EXPIRED,
                )
            return httpx2.Response(
                response.status_code, headers=response.headers, content=body, request=request
            )
        return response


def _exc_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc) or 'no detail'}"


def _router_response(request: httpx2.Request, message: str, kind: str) -> httpx2.Response:
    error = router_error(message, kind)
    body = {"jsonrpc": "2.0", "id": None, "error": error.model_dump(mode="json")}
    return httpx2.Response(503, json=body, request=request)


def make_http_client(config: BackendConfig) -> httpx2.AsyncClient:
    """One pooled HTTP client per backend, kept across reconnects (SSL context built once)."""
    return _BackendHTTPClient(
        headers=dict(config.headers), timeout=_HTTP_TIMEOUT, transport=KeepAliveTransport()
    )


@asynccontextmanager
async def open_transport(
    config: BackendConfig, http_client: httpx2.AsyncClient | None, observer: TransportObserver
) -> AsyncIterator[tuple[Any, Any]]:
    """Open the configured transport and yield its (read, write) streams."""
    if config.transport == "stdio":
        cm: Any = _sdk_stdio(config) if sys.platform == "win32" else _posix_stdio(config, observer)
    elif config.transport == "sse":
        assert config.url is not None
        cm = sse_client(
            config.url, headers=dict(config.headers), timeout=_HTTP_TIMEOUT.connect or 30
        )
    else:
        assert config.url is not None and http_client is not None
        cm = streamable_http_client(config.url, http_client=http_client)
    async with cm as streams:
        read_stream, write_stream = streams[0], streams[1]
        yield _ObservedReadStream(read_stream, observer), write_stream
