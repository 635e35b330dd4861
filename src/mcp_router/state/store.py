"""The shared state store of a replica set: one Redis (or Valkey) reached with redis-py asyncio.

Every key this router writes starts with :data:`KEY_PREFIX` (``mcp-router:``), and every
pub/sub channel too, so one Redis can serve other applications beside it. The store's URL may
hold a password: it is shown only through :meth:`StateStore.shown_url` (userinfo masked) and
every error text passes through :func:`mcp_router.secrets.redact` (the password is registered
as a front secret, see ``secrets.front_secrets``).

Health: :meth:`StateStore.ping` answers whether Redis is reachable now and remembers the last
problem, which ``/ready`` shows while Redis cannot be reached. While it is down,
:meth:`StateStore.watch` pings once a second and flips :attr:`StateStore.healthy` back as soon
as Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mcp_router import secrets
from mcp_router.settings import RouterSettings

__all__ = ["KEY_PREFIX", "StateStore", "StateUnavailable"]

logger = logging.getLogger("mcp_router.state")

KEY_PREFIX = "mcp-router:"
# Every command is bounded: a Redis that stops answering must not hold a client's request
# longer than this (the request then fails over to what the replica holds locally).
_TIMEOUT_SECONDS = 2.0


class StateUnavailable(Exception):
    """The state store cannot be reached; the message names it (password masked)."""


class StateStore:
    """The replica set's Redis: keys under one prefix, health, this replica's id."""

    def __init__(self, url: str, replica_id: str, *, prefix: str = KEY_PREFIX) -> None:
        self.url = url
        self.replica_id = replica_id
        self.prefix = prefix
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=_TIMEOUT_SECONDS,
            socket_timeout=_TIMEOUT_SECONDS,
            decode_responses=False,
            # After a Redis restart the pooled connections are dead: retry at once on a fresh
            # one (redis-py's default backs off for seconds, longer than a request may wait).
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        self.healthy = False
        self.problem: str | None = "not connected yet"
        self._recovered = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: RouterSettings) -> StateStore | None:
        """The store named by ``MCP_STATE_URL``, or None when it is unset (state in process)."""
        if not settings.state_url:
            return None
        return cls(settings.state_url, settings.replica_id)

    def shown_url(self) -> str:
        """The URL safe to show: userinfo masked."""
        return secrets.redact_url(self.url) or ""

    def key(self, *parts: str) -> str:
        """``mcp-router:part1:part2...``."""
        return self.prefix + ":".join(parts)

    def describe_problem(self, exc: BaseException) -> str:
        """What went wrong, naming the store, with no secret in it."""
        detail = secrets.redact(str(exc) or type(exc).__name__)
        return f"state store {self.shown_url()} unreachable: {detail}"

    def mark_down(self, exc: BaseException) -> StateUnavailable:
        """Record a failure of a command; returns the error to raise."""
        problem = self.describe_problem(exc)
        if self.healthy or self.problem != problem:
            logger.warning("%s (replica %s)", problem, self.replica_id)
        self.healthy = False
        self.problem = problem
        self._recovered.clear()
        return StateUnavailable(problem)

    def mark_up(self) -> None:
        """Record that Redis answered."""
        if not self.healthy:
            logger.info("state store %s reachable (replica %s)", self.shown_url(), self.replica_id)
        self.healthy = True
        self.problem = None
        self._recovered.set()

    async def ping(self) -> bool:
        """Whether Redis answers now (updates :attr:`healthy` and :attr:`problem`)."""
        try:
            await asyncio.wait_for(self.client.ping(), _TIMEOUT_SECONDS)
        except (TimeoutError, RedisError, OSError) as exc:
            self.mark_down(exc)
            return False
        self.mark_up()
        return True

    async def call(self, command: str, *args: Any, **kwargs: Any) -> Any:
        """Run one Redis command; a failure marks the store down and raises StateUnavailable."""
        try:
            result = await asyncio.wait_for(
                getattr(self.client, command)(*args, **kwargs), _TIMEOUT_SECONDS
            )
        except (TimeoutError, RedisError, OSError) as exc:
            raise self.mark_down(exc) from None
        if not self.healthy:
            self.mark_up()
        return result

    async def watch(self, interval: float = 1.0) -> None:
        """Forever: while the store is down, ping it every ``interval`` s until it answers."""
        while True:
            if self.healthy:
                await asyncio.sleep(interval * 5)
                continue
            await self.ping()
            if not self.healthy:
                await asyncio.sleep(interval)

    async def wait_recovered(self) -> None:
        """Return once the store is reachable (at once if it is)."""
        await self._recovered.wait()

    async def aclose(self) -> None:
        """Close the connection pool."""
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()
