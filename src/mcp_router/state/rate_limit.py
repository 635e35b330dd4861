"""Per-client token buckets shared by every replica of a router set, in Redis.

With ``MCP_STATE_URL`` set, a client's bucket lives in Redis instead of the process, so a limit
of 5 requests/s holds for the whole replica set, not 5/s per replica. One Lua script refills
and takes a token atomically (Redis runs a script as one command), using Redis's own clock so
the replicas' clocks do not matter. Keys:

- ``mcp-router:ratelimit:<sha256 of the client key, 32 hex>``: a hash of ``tokens`` (float) and
  ``ts`` (Redis time, seconds). Hashed because a client key may hold an MCP session id, which
  is a credential for that session. The key expires once the bucket would be full again
  (``burst / rate`` seconds after its last use, plus one), so idle clients cost nothing and an
  expired key means exactly what a fresh one means.

When Redis cannot be reached during a check, the request is admitted (fail open, as Envoy's
global rate limit does by default: a rate limit protects backends, it must not become the
outage). The replica logs a warning at most once per :data:`WARNING_INTERVAL` seconds, naming
the state URL with its password redacted, skips Redis for :data:`RETRY_AFTER` seconds after a
failure (so requests do not each wait on a dead server), and shares limits again as soon as
Redis answers.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

import anyio
import redis.asyncio
from redis.exceptions import RedisError

from mcp_router.secrets import redact, redact_url

__all__ = [
    "CHECK_TIMEOUT",
    "KEY_PREFIX",
    "RETRY_AFTER",
    "WARNING_INTERVAL",
    "SharedTokenBucket",
]

logger = logging.getLogger("mcp_router.state.rate_limit")

KEY_PREFIX = "mcp-router:ratelimit:"
CHECK_TIMEOUT = 2.0
"""Seconds one check may take before it counts as Redis unreachable (normally ~1 ms; the first
checks of a burst open connections, and a loaded replica's event loop lags: 0.5 s was
exceeded in tests on a busy 2-core machine)."""
RETRY_AFTER = 1.0
"""Seconds Redis is not asked again after a failed check (those requests are admitted)."""
WARNING_INTERVAL = 10.0
"""At most one "unreachable" warning per this many seconds."""

# KEYS[1] bucket; ARGV rate (tokens/s), burst (capacity), cost. Returns 1 admitted, 0 limited.
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(saved[1])
local ts = tonumber(saved[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local admitted = 0
if tokens >= cost then
  tokens = tokens - cost
  admitted = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return admitted
"""


class SharedTokenBucket:
    """Token buckets in Redis, one per client key, shared by every replica using the server.

    ``consume`` admits or refuses one request of a client; rate and burst are passed on every
    call, so a config reload takes effect at once on every replica that has reloaded.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        url: str | None = None,
        owned: bool = False,
        prefix: str = KEY_PREFIX,
        check_timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self.client = client
        self.where = redact_url(url) if url else "the state store"
        self.prefix = prefix
        self.check_timeout = check_timeout
        self.failed_open = 0
        """Requests admitted without a check because Redis was unreachable."""
        self.unreachable = False
        self._owned = owned
        self._script = client.register_script(TOKEN_BUCKET_LUA)
        self._retry_at = 0.0
        self._last_warning = -math.inf
        self._announced = False

    def key(self, client: str) -> str:
        """The Redis key of ``client``'s bucket."""
        return self.prefix + hashlib.sha256(client.encode()).hexdigest()[:32]

    async def consume(self, client: str, rate: float, burst: int) -> bool:
        """Take one token from ``client``'s bucket: True if it had one (or Redis is down)."""
        now = time.monotonic()
        if now < self._retry_at:
            self.failed_open += 1
            return True
        try:
            with anyio.fail_after(self.check_timeout):
                admitted = await self._script(keys=[self.key(client)], args=[repr(rate), burst, 1])
        except (RedisError, OSError) as exc:  # builtin TimeoutError (fail_after) is an OSError
            self._fail_open(exc, time.monotonic())
            return True
        self.unreachable = False
        if self._announced:  # the outage was logged: say it is over, once
            self._announced = False
            logger.info("shared rate limit: %s answers again; limits are shared again", self.where)
        return bool(admitted)

    def _fail_open(self, exc: BaseException, now: float) -> None:
        self.failed_open += 1
        self.unreachable = True
        self._retry_at = now + RETRY_AFTER
        if now - self._last_warning >= WARNING_INTERVAL:
            self._last_warning = now
            self._announced = True
            reason = redact(str(exc)) or f"no answer within {self.check_timeout:g} s"
            logger.warning(
                "shared rate limit: %s unreachable (%s: %s); requests are admitted without a "
                "limit until it answers (fail open)",
                self.where,
                type(exc).__name__,
                reason,
            )

    async def aclose(self) -> None:
        """Close the Redis client if this object opened it."""
        if self._owned:
            await self.client.aclose()
