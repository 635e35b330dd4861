"""The stdio transport: the backend is a child process speaking JSON-RPC lines on stdin/stdout.

On POSIX the router runs the child itself rather than through the SDK, because it needs:

- the pid and a process group of the child's own (``start_new_session``): at shutdown the
  whole group is stopped, as the MCP spec orders it (close stdin, wait, SIGTERM the group,
  wait, SIGKILL), so grandchildren do not outlive the router; exit codes are reported;
- when the router dies without a shutdown (SIGKILL, OOM killer): on Linux a parent-death
  signal (``PR_SET_PDEATHSIG`` = SIGKILL, set in the child between fork and exec) kills the
  child, and on POSIX a guard process (`_GroupGuard`) kills its whole process group, so
  grandchildren go too. What can survive: processes that left the group (``setsid``,
  daemons), and ones running as another user;
- bounded reading (`framing.LineReader`): stdout is read in chunks and split in linear time;
  a message over ``MCP_MAX_MESSAGE_BYTES`` fails the request it answers (or, when its id
  cannot be read, restarts the session) and is never held in memory whole;
- stderr forwarded into the router's log by a thread, lines cut at a cap and rate limited;
- a documented environment (`child_environment`).

On Windows the SDK's stdio transport is used (no process groups there).
"""

from __future__ import annotations

import asyncio
import ctypes
import fnmatch
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import TaskGroup
from mcp.client.stdio import DEFAULT_INHERITED_ENV_VARS, StdioServerParameters, stdio_client
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from mcp_router.backends.transports.base import (
    BackendTransport,
    TransportLimits,
    TransportObserver,
    snippet,
    too_large_error,
)
from mcp_router.backends.transports.framing import LineReader, Oversized, StderrLines
from mcp_router.config.models import BackendConfig

logger = logging.getLogger("mcp_router.backend")

# stdio shutdown, as the MCP spec orders it: close stdin, wait, SIGTERM the group, wait, SIGKILL.
_EXIT_GRACE = 2.0
_TERM_GRACE = 2.0
_EXIT_POLL = 0.01
_READ_CHUNK = 256 * 1024

# What a stdio child gets from the router's environment by default (``inherit_env: default``),
# on top of the SDK's base set (HOME, LOGNAME, PATH, SHELL, TERM, USER on POSIX). Chosen so
# that servers run the way they do from a shell (TLS trust stores, proxies, locale, time zone,
# temp and XDG folders) without handing them the router's own secrets (MCP_AUTH_TOKENS, cloud
# credentials, ...): those need ``inherit_env: all`` or a name in ``env_passthrough``.
DEFAULT_PASSTHROUGH: tuple[str, ...] = (
    *DEFAULT_INHERITED_ENV_VARS,
    # TLS trust: without these, servers behind a corporate CA fail ("UnknownIssuer").
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    # Proxies (both spellings: tools disagree on which one they read).
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    # Locale and time zone: text encoding and timestamps as the user has them.
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    # Where to put temporary files, caches and config (uvx / npx caches live there).
    "TMPDIR",
    "TEMP",
    "TMP",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_DIRS",
    "XDG_DATA_DIRS",
)


def _matches(name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def child_environment(
    config: BackendConfig, environ: dict[str, str] | os._Environ[str] | None = None
) -> dict[str, str]:
    """The environment a stdio backend is started with.

    ``inherit_env`` says what comes from the router's environment: ``default`` the names in
    `DEFAULT_PASSTHROUGH`, ``all`` everything, ``none`` nothing; ``env_passthrough`` adds
    names (or ``fnmatch`` patterns) to that; ``env`` is applied last and wins. Values that
    are shell functions (``() {...``) are never passed on.
    """
    source = os.environ if environ is None else environ
    mode = config.inherit_env
    extra = tuple(config.env_passthrough)
    if mode == "all":
        env = dict(source)
    else:
        patterns = (DEFAULT_PASSTHROUGH if mode == "default" else ()) + extra
        env = {k: v for k, v in source.items() if _matches(k, patterns)}
    env = {k: v for k, v in env.items() if not v.startswith("()")}
    env.update(config.env)
    return env


# ---------------------------------------------------------------------------------- children

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl  # type: ignore[no-any-return]


# Resolved once, in the parent: the child only calls it (no import, no lookup after fork).
_PRCTL = _load_prctl()
_SIGKILL = int(signal.SIGKILL)


def _set_parent_death_signal() -> None:
    """In the child, between fork and exec: die (SIGKILL) when the router's thread dies.

    Runs as ``preexec_fn``. Python's warning about ``preexec_fn`` and threads is about code
    that takes locks another thread may have held at fork time (imports, logging, allocation
    in Python objects). This calls one already-resolved C function with constant small-int
    arguments: prctl(2) is a plain system call, async-signal-safe.

    What it does not cover, and why `_GroupGuard` exists: the signal goes to the direct child
    only (it is cleared on fork, so grandchildren do not inherit it; a ``sh -c`` wrapper that
    execs its last command is fine, because exec keeps it); it fires when the *thread* that
    started the child exits (the router starts children from its event loop thread, which
    lives as long as the process); it is cleared when the child execs a set-uid binary.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)


# The guard: one small ``sh`` per router process, in a session of its own, that holds the read
# end of a pipe only the router can write to. The router registers each stdio child's process
# group on it ("+ PGID", "- PGID" once the group is stopped). When the router dies in any way,
# SIGKILL included, the pipe reaches EOF and the guard SIGKILLs every group still registered:
# grandchildren that ignore SIGTERM and their stdin go too, which PR_SET_PDEATHSIG alone (the
# direct child only) cannot promise. Only processes that left the group (setsid, daemons) or
# run as another user escape.
_GUARD_SCRIPT = """
groups=""
while read -r op pgid; do
  case "$op" in
    +) groups="$groups $pgid" ;;
    -) kept=""; for g in $groups; do [ "$g" = "$pgid" ] || kept="$kept $g"; done; groups=$kept ;;
  esac
done
for g in $groups; do kill -9 -"$g" 2>/dev/null; done
"""


class _GroupGuard:
    """Kills the registered process groups when this process dies (see `_GUARD_SCRIPT`)."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._failed = False
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def _start(self) -> int | None:
        if self._fd is not None or self._failed:
            return self._fd
        read_fd, write_fd = os.pipe()
        try:
            self._process = subprocess.Popen(
                ["/bin/sh", "-c", _GUARD_SCRIPT],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # the router's terminal signals are not for it
                env={"PATH": "/usr/bin:/bin"},
            )
        except OSError as exc:
            logger.warning("no process-group guard (%s): children rely on PDEATHSIG", exc)
            self._failed = True
            os.close(write_fd)
            return None
        finally:
            os.close(read_fd)
        self._fd = write_fd  # not inheritable (PEP 446): only the router holds it
        return write_fd

    def _send(self, line: str) -> None:
        with self._lock:
            fd = self._start()
            if fd is None:
                return
            try:
                os.write(fd, line.encode())
            except OSError as exc:
                logger.warning("process-group guard gone (%s): children rely on PDEATHSIG", exc)
                self._failed = True

    def watch(self, pgid: int) -> None:
        """Kill group ``pgid`` if the router dies before `release`."""
        self._send(f"+ {pgid}\n")

    def release(self, pgid: int) -> None:
        """Group ``pgid`` was stopped: forget it (its id may be reused)."""
        self._send(f"- {pgid}\n")


_GUARD = _GroupGuard()


def _forward_stderr(fd: int, backend: str, limits: TransportLimits) -> None:
    """Log what the child writes to stderr (runs in a daemon thread until EOF)."""
    child_log = logging.getLogger(f"mcp_router.backend.{backend}")
    lines = StderrLines(
        lambda text: child_log.info("[%s stderr] %s", backend, text),
        line_bytes=limits.stderr_line_bytes,
        per_second=limits.stderr_lines_per_second,
        burst=limits.stderr_burst,
    )
    try:
        while chunk := os.read(fd, _READ_CHUNK):
            lines.feed(chunk)
    except OSError:
        pass
    finally:
        lines.close()
        os.close(fd)


def _start_stderr_thread(fd: int, backend: str, limits: TransportLimits) -> None:
    threading.Thread(
        target=_forward_stderr, args=(fd, backend, limits), daemon=True, name=f"stderr-{backend}"
    ).start()


def _parse_line(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValidationError as exc:
        return exc


async def _wait_exit(process: asyncio.subprocess.Process, timeout: float) -> bool:
    # Not process.wait(): on asyncio it also waits for the pipes, which a grandchild may hold.
    with anyio.move_on_after(timeout):
        while process.returncode is None:  # noqa: ASYNC110 - returncode has no event to wait on
            await anyio.sleep(_EXIT_POLL)
        return True
    return False


async def _stop_process_group(process: asyncio.subprocess.Process, name: str) -> None:
    """Close stdin, give the child time to exit, then stop its whole process group."""
    from mcp.os.posix.utilities import terminate_posix_process_tree

    if process.stdin is not None:
        with suppress(OSError):
            process.stdin.close()
    if not await _wait_exit(process, _EXIT_GRACE):
        logger.info("backend '%s': child %d still running; terminating it", name, process.pid)
    # Always, even when the leader exited on its own: members of its group (grandchildren that
    # ignore stdin) would otherwise outlive the router. SIGTERM, then SIGKILL after the grace.
    await terminate_posix_process_tree(process, _TERM_GRACE)  # type: ignore[arg-type]
    if not await _wait_exit(process, _TERM_GRACE):
        logger.warning("backend '%s': child %d survived SIGKILL", name, process.pid)


def _oversized_message(item: Oversized, config: BackendConfig) -> SessionMessage | None:
    """What to deliver for a line over the limit: an error for the request it answers."""
    envelope = item.envelope
    if not envelope.is_response or envelope.id is None:
        return None
    error = too_large_error(config.name, item.limit, "a response")
    return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=envelope.id, error=error))


class StdioTransport(BackendTransport):
    """A supervised child process (``command``, ``args``, ``env``, ``cwd``)."""

    name = "stdio"

    def open(self, observer: TransportObserver, tg: TaskGroup) -> Any:
        """Spawn the child and speak newline-delimited JSON-RPC with it."""
        if sys.platform == "win32":
            return self._sdk_stdio()
        return self._posix_stdio(observer)

    @asynccontextmanager
    async def _posix_stdio(self, observer: TransportObserver) -> AsyncIterator[Any]:
        config, limits = self.config, self.limits
        assert config.command is not None
        err_read, err_write = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                config.command,
                *config.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err_write,
                env=child_environment(config),
                cwd=config.cwd,
                start_new_session=True,  # its own group: killpg reaches every descendant
                preexec_fn=_set_parent_death_signal if _PRCTL is not None else None,
            )
        except BaseException:
            os.close(err_read)
            os.close(err_write)
            raise
        os.close(err_write)  # the child holds its copy; the reader thread sees EOF when it is gone
        _GUARD.watch(process.pid)
        _start_stderr_thread(err_read, config.name, limits)
        logger.info("backend '%s': started %s (pid %d)", config.name, config.command, process.pid)

        read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
        assert process.stdin is not None and process.stdout is not None
        stdin, stdout = process.stdin, process.stdout

        reader_done = anyio.Event()

        async def reader() -> None:
            lines = LineReader(limits.max_message_bytes)
            async with read_writer:
                try:
                    while chunk := await stdout.read(_READ_CHUNK):
                        for item in lines.feed(chunk):
                            if isinstance(item, Oversized):
                                await self._deliver_oversized(item, read_writer, observer)
                            else:
                                await read_writer.send(_parse_line(item))
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                    pass  # our own shutdown, or the session went away
                # stdout ended: the child is exiting. Report how, before the session sees EOF.
                await _wait_exit(process, 0.5)
                observer.on_process_exit(process.returncode)
                reader_done.set()

        async def writer() -> None:
            try:
                async with write_reader:
                    async for message in write_reader:
                        data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                        stdin.write((data + "\n").encode())
                        await stdin.drain()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                # The child stopped reading. When it is exiting, the reader reports how (the
                # exit is the cause errors should name) and ends the session; a child that
                # lives on with stdin closed is cut here rather than leave requests hanging.
                with anyio.move_on_after(1.0):
                    await reader_done.wait()
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
                    _GUARD.release(process.pid)
                tg.cancel_scope.cancel()

    async def _deliver_oversized(
        self, item: Oversized, read_writer: Any, observer: TransportObserver
    ) -> None:
        envelope = item.envelope
        limit = item.limit
        detail = (
            f"a message larger than MCP_MAX_MESSAGE_BYTES={limit} "
            f"(starts {snippet(item.head[:120].decode('utf-8', 'replace'))!r})"
        )
        message = _oversized_message(item, self.config)
        if message is not None:
            observer.on_message_too_large(detail, fatal=False)
            await read_writer.send(message)
        elif envelope.method is not None:
            # A notification or server request nobody waits on: dropping it is enough.
            observer.on_message_too_large(detail, fatal=False)
        else:
            # Whose answer it was is unknown: a request would wait for its timeout. Restart.
            observer.on_message_too_large(detail, fatal=True)

    @asynccontextmanager
    async def _sdk_stdio(self) -> AsyncIterator[Any]:
        """The SDK's stdio transport (where there are no POSIX process groups).

        The SDK always adds its base variables to ``env``; ``inherit_env: none`` cannot
        remove them here.
        """
        config = self.config
        assert config.command is not None
        params = StdioServerParameters(
            command=config.command,
            args=list(config.args),
            env=child_environment(config),
            cwd=config.cwd,
            encoding_error_handler="replace",
        )
        read_fd, write_fd = os.pipe()
        _start_stderr_thread(read_fd, config.name, self.limits)
        errlog = os.fdopen(write_fd, "w")
        try:
            async with stdio_client(params, errlog=errlog) as streams:
                yield streams[0], streams[1]
        finally:
            errlog.close()
