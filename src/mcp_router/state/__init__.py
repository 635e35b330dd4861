"""Shared state of a replica set (``MCP_STATE_URL``): the Redis store, shared sessions
and the shared rate limit (`rate_limit`).

Unset state URL: nothing here is used and every piece of client state stays in the process.
Below ``backends``/``gateway``: it uses only config/settings, secrets and logs.
"""

from mcp_router.state.sessions import SessionFront, SessionRecord, SharedSessions
from mcp_router.state.store import KEY_PREFIX, StateStore, StateUnavailable

__all__ = [
    "KEY_PREFIX",
    "SessionFront",
    "SessionRecord",
    "SharedSessions",
    "StateStore",
    "StateUnavailable",
]
