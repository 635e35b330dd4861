"""The stdio front on asyncio pipes.

The SDK's ``stdio_server`` reads and writes through ``anyio.wrap_file``: every line read and
every line written is a hop to a worker thread and back (two thread handoffs per message,
with their locks and wake-ups: about a third of the router's CPU per stdio call, see
``bench/PROFILE-stdio.md``). Here stdin and stdout are asyncio pipe transports on the event
loop, and the server is fed exactly what the SDK's transport would produce:

- stdin is claimed as the SDK claims it (its ``_claim_fd``: fd 0 points at the null device and
  fd 1 at stderr while serving, so stray output of handlers misses the wire; restored on exit);
- lines end as in the SDK's text layer (universal newlines: ``\\n``, ``\\r\\n`` or ``\\r``),
  are decoded as UTF-8 with replacement, and each is parsed by the SDK's own
  ``jsonrpc_message_adapter.validate_json``; a line that does not parse is handed on as the
  exception, as the SDK does;
- each outgoing message is ``model_dump_json(by_alias=True, exclude_unset=True)`` plus
  ``\\n``, written and drained before the next one, as the SDK writes and flushes.

`tests/test_stdio_front.py` checks this message for message against the SDK's ``stdio_server``
on the same input. When stdin or stdout is not a pipe or socket (a terminal, a file), the
SDK's own transport is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import stat
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from fastmcp import FastMCP
from fastmcp.server.context import reset_transport, set_transport
from mcp.server import stdio as sdk_stdio
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage

logger = logging.getLogger("mcp_router.stdio")

_READ_LIMIT = 2**31 - 1  # a line is a whole message: the backends' limits apply, not a buffer's


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


_EOL = re.compile(rb"\r\n?|\n")


def split_lines(buffer: bytearray, final: bool = False) -> list[str]:
    """Take the complete lines out of ``buffer`` as the SDK's text layer would yield them.

    Universal newlines: ``\\r\\n``, ``\\r`` and ``\\n`` each end a line, which is yielded with
    ``\\n``; a ``\\r`` at the end of the buffer waits for the next byte (it may start
    ``\\r\\n``) unless ``final``. With ``final`` the unterminated rest is the last line.
    """
    out: list[str] = []
    start = 0
    end = len(buffer)
    for eol in _EOL.finditer(buffer):
        if eol.end() == end and buffer[end - 1] == 0x0D and not final:
            break  # maybe the first half of \r\n
        out.append(buffer[start : eol.start()].decode("utf-8", errors="replace") + "\n")
        start = eol.end()
    if final and start < end:
        out.append(buffer[start:end].decode("utf-8", errors="replace"))
        start = end
    del buffer[:start]
    return out


def parse_line(line: str) -> SessionMessage | Exception:
    """One line as the SDK's stdio transport hands it to the session."""
    try:
        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except Exception as exc:
        return exc
    return SessionMessage(message)


def serialize(message: SessionMessage) -> bytes:
    """One outgoing message as the SDK's stdio transport writes it."""
    return (message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode()


@asynccontextmanager
async def pipe_transport(stdin_fd: int, stdout_fd: int) -> AsyncIterator[tuple[Any, Any]]:
    """``(read_stream, write_stream)`` over two pipe descriptors, the SDK's stream types."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_LIMIT, loop=loop)
    stdin_file = os.fdopen(stdin_fd, "rb", buffering=0, closefd=False)
    stdout_file = os.fdopen(stdout_fd, "wb", buffering=0, closefd=False)
    blocking = (os.get_blocking(stdin_fd), os.get_blocking(stdout_fd))
    read_transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), stdin_file
    )
    write_transport, write_protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(loop=loop), stdout_file
    )
    writer = asyncio.StreamWriter(write_transport, write_protocol, None, loop)

    read_stream_writer, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream, write_stream_reader = create_context_streams[SessionMessage](0)

    async def stdin_reader() -> None:
        pending = bytearray()
        try:
            async with read_stream_writer:
                while True:
                    chunk = await reader.read(65536)
                    pending += chunk
                    for line in split_lines(pending, final=not chunk):
                        await read_stream_writer.send(parse_line(line))
                    if not chunk:
                        return
        except anyio.ClosedResourceError:
            await anyio.lowlevel.checkpoint()

    async def stdout_writer() -> None:
        try:
            async with write_stream_reader:
                async for session_message in write_stream_reader:
                    writer.write(serialize(session_message))
                    await writer.drain()
        except (anyio.ClosedResourceError, ConnectionError):
            await anyio.lowlevel.checkpoint()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stdin_reader)
            tg.start_soon(stdout_writer)
            yield read_stream, write_stream
    finally:
        read_transport.close()
        write_transport.close()
        with contextlib.suppress(OSError):
            os.set_blocking(stdin_fd, blocking[0])
            os.set_blocking(stdout_fd, blocking[1])


@asynccontextmanager
async def stdio_transport() -> AsyncIterator[tuple[Any, Any]]:
    """The process's stdin/stdout on asyncio pipes, claimed as the SDK claims them; the SDK's
    own ``stdio_server`` when either is not a pipe or socket."""
    if not (_is_pipe(0) and _is_pipe(1)):
        async with sdk_stdio.stdio_server() as streams:
            yield streams
        return
    releases: list[Callable[[], None]] = []
    try:
        stdin, release_in = sdk_stdio._claim_fd(0, sys.stdin, "rb", sdk_stdio._open_stdin_diversion)
        if release_in is not None:
            releases.append(release_in)
        stdout, release_out = sdk_stdio._claim_fd(
            1, sys.stdout, "wb", sdk_stdio._open_stdout_diversion
        )
        if release_out is not None:
            releases.append(release_out)
        async with pipe_transport(stdin.fileno(), stdout.fileno()) as streams:
            yield streams
    finally:
        for release in reversed(releases):
            release()


async def run_stdio(server: FastMCP) -> None:
    """FastMCP's ``run_stdio_async`` (no banner), with `stdio_transport` as the transport."""
    token = set_transport("stdio")
    try:
        async with server._lifespan_manager(), stdio_transport() as (read_stream, write_stream):
            logger.debug("serving MCP over stdio (asyncio pipes)")
            await server._mcp_server.run(
                read_stream, write_stream, server._mcp_server.create_initialization_options()
            )
    finally:
        reset_transport(token)
