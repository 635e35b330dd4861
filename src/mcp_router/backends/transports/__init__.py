"""Client transports to one backend, one module per transport, behind a registry.

===========  ===================================  ==========================================
name         module                               what it is
===========  ===================================  ==========================================
``stdio``    `stdio.py`                           a supervised child process (POSIX: the
                                                  router's own; Windows: the SDK's)
``http``     `http.py`                            streamable HTTP (the SDK's), pooled client
``sse``      `sse.py`                             legacy HTTP+SSE (the SDK's)
===========  ===================================  ==========================================

`base.py` holds what they share: the `BackendTransport` interface, `TransportLimits`, the
observed read stream and the router-synthesised error marks (`ROUTER_MARK`, `NOT_REACHED`,
...); `framing.py` splits what backends send in linear time and bounded memory.

`TRANSPORTS` maps each name of the config literal `config.models.Transport` (what
``BackendConfig.transport`` holds after validation) to its class, one to one (a test checks
it). A `Backend` creates its transport with `create_transport`, enters it for its whole life
(a transport owns what outlives a session: the HTTP transport's pooled client) and calls
``connect(observer)`` once per session; it knows nothing of any particular transport.

Adding a transport:

1. a module here with a `BackendTransport` subclass: ``name``, ``open(observer, tg)`` (an
   async context manager yielding the session's (read, write) streams of `SessionMessage`),
   and ``__aenter__``/``__aexit__`` if it holds resources across sessions;
2. an entry in `TRANSPORTS` below;
3. the name in the ``Transport`` literal (and ``BackendConfig.transport``) in
   `config/models.py`, with how it is inferred or validated; then regenerate the JSON schema
   (``mcp-router schema -o config/backends.schema.json``).
"""

from __future__ import annotations

from typing import get_args

from mcp_router.backends.transports.base import (
    CONNECTION_LOST,
    INVALID_RESPONSE,
    MESSAGE_TOO_LARGE,
    NOT_REACHED,
    OVER_CAPACITY,
    ROUTER_MARK,
    SESSION_EXPIRED,
    BackendTransport,
    TransportLimits,
    TransportObserver,
    router_error,
    router_error_kind,
)
from mcp_router.backends.transports.http import StreamableHTTPTransport
from mcp_router.backends.transports.sse import SSETransport
from mcp_router.backends.transports.stdio import (
    DEFAULT_PASSTHROUGH,
    StdioTransport,
    child_environment,
)
from mcp_router.config.models import BackendConfig, Transport

__all__ = [
    "CONNECTION_LOST",
    "DEFAULT_PASSTHROUGH",
    "INVALID_RESPONSE",
    "MESSAGE_TOO_LARGE",
    "NOT_REACHED",
    "OVER_CAPACITY",
    "ROUTER_MARK",
    "SESSION_EXPIRED",
    "TRANSPORTS",
    "BackendTransport",
    "TransportLimits",
    "TransportObserver",
    "child_environment",
    "create_transport",
    "router_error",
    "router_error_kind",
]

TRANSPORTS: dict[str, type[BackendTransport]] = {
    "stdio": StdioTransport,
    "http": StreamableHTTPTransport,
    "sse": SSETransport,
}
assert set(TRANSPORTS) == set(get_args(Transport)), "TRANSPORTS must match config Transport"


def create_transport(config: BackendConfig, limits: TransportLimits) -> BackendTransport:
    """The transport for ``config`` (enter it, then ``connect()`` once per session)."""
    return TRANSPORTS[config.resolved_transport](config, limits)
