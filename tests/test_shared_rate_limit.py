"""Per-client rate limits shared by a replica set through Redis (``MCP_STATE_URL``).

A real ``redis-server`` (password protected, no persistence) on an ephemeral loopback port, real
router processes over HTTP in front of a real FastMCP backend, and the SDK client: three
replicas hit at once admit about one bucket's worth (burst + rate x elapsed), not three, both
when each client talks to its own replica and when a 2026-07-28 client goes through HAProxy
(``deploy/haproxy.cfg``, round robin per request) to all of them; the Lua bucket on its own
against the server; Redis stopped while running makes the check fail open (one warning, the
password redacted) and the shared limit comes back with Redis. Without a state URL the buckets
stay in the process, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
import redis.asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from cluster import redis_server as cluster_redis
from mcp_router.config import load_effective_config
from mcp_router.gateway.server import build_router
from mcp_router.settings import load_settings
from mcp_router.state.rate_limit import (
    KEY_PREFIX,
    RETRY_AFTER,
    WARNING_INTERVAL,
    SharedTokenBucket,
)
from opsupport import bearer_client, sample, scrape
from support import (
    ROOT,
    RouterProcess,
    child_env,
    free_port,
    kill_group,
    run_router,
    wait_until,
    wait_until_async,
    write_config,
)

pytestmark = [
    pytest.mark.xdist_group("ratelimit"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed"),
]

PASSWORD = "redis-pw-4e7d1c9a"
STATE_KEY = "state-key-for-tests-0123456789abcdef"  # 32+ characters, shared by the replicas
RATE = 2.0  # requests/s per client, for the whole replica set
BURST = 10
# One identity per test, so each test starts with a full bucket.
TOKENS = {
    "alice": "tok-alice-8f2b6d1e",
    "bob": "tok-bob-3c9a7e5f",
    "carol": "tok-carol-6b1d4f2a",
    "dan": "tok-dan-9e4a2c7b",
}
LIMITED = f"mcp-router: rate limit exceeded ({RATE:g} requests/s per client, burst {BURST})"


@contextlib.contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen[Any]]:
    """``redis-server`` on 127.0.0.1:``port`` with the tests' password (tests/cluster.py)."""
    with cluster_redis(port, password=PASSWORD) as (_, proc):
        yield proc


def state_url(port: int) -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{port}/0"


def router_env(port: int, **extra: str) -> dict[str, str]:
    return child_env(
        MCP_STATE_URL=state_url(port),
        MCP_STATE_KEY=STATE_KEY,
        MCP_AUTH_TOKENS=",".join(f"{name}={token}" for name, token in TOKENS.items()),
        MCP_RATE_LIMIT_PER_SECOND=f"{RATE:g}",
        MCP_RATE_LIMIT_BURST=str(BURST),
        **extra,
    )


@pytest.fixture(scope="module")
def backend_config(start_server: Callable[..., str], module_tmp: Path) -> Path:
    return write_config(
        module_tmp / "backends.yaml", [{"name": "basic", "url": start_server("basic", "http")}]
    )


@pytest.fixture(scope="module")
def redis_port(module_tmp: Path) -> Iterator[int]:
    port = free_port()
    with redis_server(port):
        yield port


@pytest.fixture(scope="module")
def replicas(
    backend_config: Path, redis_port: int, module_tmp: Path
) -> Iterator[list[RouterProcess]]:
    """Three routers with the same config, state URL and state key."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                run_router(
                    backend_config,
                    module_tmp / f"replica-{n}.log",
                    env=router_env(redis_port, MCP_REPLICA_ID=f"replica-{n}"),
                    timeout=90,
                )
            )
            for n in range(3)
        ]


async def _call(client: Any) -> MCPError | None:
    """One routed tools/call: None when admitted, the error when refused."""
    try:
        result = await client.call_tool("basic_whoami", {})
    except MCPError as exc:
        return exc
    assert not result.is_error
    return None


# ------------------------------------------------------------------------- across replicas


@dataclass
class Load:
    """What a client (or several) sent and got: every outcome is None (admitted) or an error."""

    requests: int
    admitted: int
    outcomes: list[MCPError | None]
    enough_at: float  # seconds from the start when the load was judged enough
    elapsed: float  # seconds from the start to the last answer

    @property
    def errors(self) -> list[MCPError]:
        return [o for o in self.outcomes if o is not None]


async def _hammer(clients: list[Any], start: float, before: int) -> Load:
    """Call through ``clients`` in rounds until three independent buckets would have admitted
    clearly more than one: 3 x (burst + rate x elapsed) requests and some (a deadline bounds
    the loop). ``before`` requests were sent and admitted already."""
    requests = admitted = before
    outcomes: list[MCPError | None] = []
    deadline = start + 120
    while requests < 3 * (BURST + RATE * (enough_at := time.monotonic() - start)) + 15:
        assert time.monotonic() < deadline, "could not send requests fast enough"
        batch = await asyncio.gather(*(_call(c) for c in clients for _ in range(2)))
        outcomes += batch
        requests += len(batch)
        admitted += sum(o is None for o in batch)
    return Load(requests, admitted, outcomes, enough_at, time.monotonic() - start)


def _assert_one_bucket(load: Load) -> None:
    seen = (
        f"requests={load.requests} admitted={load.admitted} "
        f"enough_at={load.enough_at:.2f}s elapsed={load.elapsed:.2f}s"
    )
    # Everything admitted from the first request to the last answer: one bucket's worth.
    one_bucket = BURST + RATE * load.elapsed
    assert BURST <= load.admitted <= one_bucket + 1, seen  # +1: clock rounding
    # Three separate buckets would have admitted at least this many of the requests sent.
    three_buckets = min(load.requests, 3 * (BURST + RATE * load.enough_at))
    assert load.admitted < three_buckets / 2, seen
    # The same error as the in-process limiter's.
    errors = load.errors
    assert errors, seen
    assert all(e.error.code == -32000 and str(e).startswith(LIMITED) for e in errors), errors[0]


def _refused_by(replicas: list[RouterProcess]) -> list[float]:
    return [sample(scrape(r.base), "mcp_router_rate_limited_total") or 0 for r in replicas]


async def test_three_replicas_admit_one_bucket_per_client_not_three(
    replicas: list[RouterProcess],
) -> None:
    for router in replicas:  # the limiter really uses Redis (password never logged)
        assert "buckets: redis://***@127.0.0.1" in router.stderr()
    refused_before = _refused_by(replicas)
    async with contextlib.AsyncExitStack() as stack:
        start = time.monotonic()
        clients = [
            await stack.enter_async_context(bearer_client(r.url, TOKENS["alice"])) for r in replicas
        ]
        for client in clients:  # the SDK lists tools once to validate results: do it now
            await client.list_tools()
        # initialize + tools/list per client were admitted
        load = await _hammer(clients, start, 2 * len(clients))

    _assert_one_bucket(load)
    refused = [a - b for a, b in zip(_refused_by(replicas), refused_before, strict=True)]
    assert all(n > 0 for n in refused), f"every replica refuses once the bucket is empty: {refused}"
    assert sum(refused) == len(load.errors)  # each refusal counted by the replica that refused


@contextlib.contextmanager
def haproxy(replicas: list[RouterProcess], workdir: Path) -> Iterator[str]:
    """HAProxy with ``deploy/haproxy.cfg`` (health checks, balancing, retries as shipped), its
    replica addresses and listening port pointed at this test's loopback ones; yields its URL."""
    text = (ROOT / "deploy" / "haproxy.cfg").read_text()
    port = free_port()
    text = text.replace("bind :8080", f"bind 127.0.0.1:{port}")
    for n, router in enumerate(replicas, start=1):
        shipped = f"server router-{n} router-{n}:8000"
        assert shipped in text
        text = text.replace(shipped, f"server router-{n} {router.base.removeprefix('http://')}")
    cfg = workdir / "haproxy-test.cfg"
    cfg.write_text(text)
    log = workdir / "haproxy.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"haproxy exited: {log.read_text()[-2000:]}")
            try:
                return httpx2.get(f"{base}/ready", timeout=2).status_code == 200
            except httpx2.HTTPError:
                return False

        wait_until(ready, 20, "HAProxy forwards /ready")
        yield f"{base}/mcp"
    finally:
        kill_group(proc)


@contextlib.asynccontextmanager
async def modern_client(url: str, token: str, sent: list[str]) -> Any:
    """A 2026-07-28 client (no protocol session: each request may land on any replica) that
    records the method of every JSON-RPC request it sends in ``sent``."""

    async def record(request: httpx2.Request) -> None:
        with contextlib.suppress(ValueError):
            message = json.loads(request.content)
            if isinstance(message, dict) and "id" in message:
                sent.append(message["method"])

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(30.0, read=120.0),
        event_hooks={"request": [record]},
    )
    async with (
        http,
        Client(streamable_http_client(url, http_client=http), mode="2026-07-28") as client,
    ):
        yield client


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
async def test_a_client_spread_over_three_replicas_by_haproxy_gets_one_bucket(
    replicas: list[RouterProcess], module_tmp: Path
) -> None:
    refused_before = _refused_by(replicas)
    sent: list[str] = []
    with haproxy(replicas, module_tmp) as url:
        start = time.monotonic()
        async with modern_client(url, TOKENS["dan"], sent) as client:
            await client.list_tools()
            before = len(sent)  # all admitted: the client would have failed otherwise
            load = await _hammer([client], start, before)
    assert len(sent) == load.requests  # every request the SDK sent is accounted for
    _assert_one_bucket(load)
    refused = [a - b for a, b in zip(_refused_by(replicas), refused_before, strict=True)]
    # Round robin per request: every replica served some of this one client's requests.
    assert all(n > 0 for n in refused), f"HAProxy spread the client over every replica: {refused}"
    assert sum(refused) == len(load.errors)


# -------------------------------------------------------------------------- the Lua bucket


@pytest.fixture
async def store(redis_port: int) -> Any:
    client = redis.asyncio.from_url(state_url(redis_port))
    try:
        yield client
    finally:
        await client.aclose()


async def test_the_lua_bucket_admits_burst_then_refills_at_rate_and_expires_when_idle(
    store: Any,
) -> None:
    bucket = SharedTokenBucket(store, prefix=f"{KEY_PREFIX}unit:")
    client = "session:3f1c-this-is-a-session-id"
    # Burst 3 at an almost nil rate: three tokens, then none.
    outcomes = [await bucket.consume(client, 0.001, 3) for _ in range(5)]
    assert outcomes == [True, True, True, False, False]
    assert await bucket.consume("ip:10.0.0.7", 0.001, 3)  # another client, its own bucket
    key = bucket.key(client)
    assert float(await store.hget(key, "tokens")) < 1
    # The key holds a digest, not the client key (which may be a session id).
    keys = [k.decode() for k in await store.keys(f"{KEY_PREFIX}unit:*")]
    assert key in keys and not any("session" in k or "3f1c" in k for k in keys)
    # It expires once the bucket would be full again: burst / rate s, plus one.
    assert 0 < await store.pttl(key) <= 3 / 0.001 * 1000 + 1000

    # 4 tokens/s, burst 1: one token, none, and one again after a quarter of a second.
    fast = "token:refill"
    assert await bucket.consume(fast, 4.0, 1)
    await asyncio.sleep(0.3)
    assert await bucket.consume(fast, 4.0, 1)
    assert 0 < await store.pttl(bucket.key(fast)) <= 250 + 1000
    # Idle, the key goes away by itself (nothing to clean up).
    await wait_until_async(
        lambda: _gone(store, bucket.key(fast)), 10, "the idle bucket's key expires"
    )
    # A fresh bucket after expiry is full again (same as before it was ever used).
    assert await bucket.consume(fast, 4.0, 1)


async def _gone(store: Any, key: str) -> bool:
    return not await store.exists(key)


async def test_a_smaller_burst_after_reload_caps_the_shared_bucket(store: Any) -> None:
    bucket = SharedTokenBucket(store, prefix=f"{KEY_PREFIX}unit:")
    client = "token:reloaded"
    assert await bucket.consume(client, 0.001, 10)  # 9 tokens left at burst 10
    outcomes = [await bucket.consume(client, 0.001, 2) for _ in range(4)]
    assert outcomes == [True, True, False, False]  # capped at the new burst of 2


async def test_an_unreachable_redis_fails_open_with_one_redacted_warning_then_recovers(
    module_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there yet
    url = state_url(port)
    client = redis.asyncio.from_url(url, socket_connect_timeout=1)
    bucket = SharedTokenBucket(client, url=url)
    caplog.set_level(logging.INFO, logger="mcp_router.state.rate_limit")
    try:
        # Burst 1 at a nil rate would refuse the second request: while Redis is down, none is.
        assert [await bucket.consume("token:x", 0.001, 1) for _ in range(20)] == [True] * 20
        assert bucket.failed_open == 20 and bucket.unreachable
        warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1, warnings  # at most one line per 10 s
        assert f"redis://***@127.0.0.1:{port}/0" in warnings[0]
        assert PASSWORD not in caplog.text

        with redis_server(port):
            await asyncio.sleep(RETRY_AFTER)  # failed checks skip Redis for this long
            assert await bucket.consume("token:x", 0.001, 1)
            assert not await bucket.consume("token:x", 0.001, 1)  # limited again
            assert not bucket.unreachable
            assert "answers again" in caplog.text
    finally:
        await client.aclose()


# -------------------------------------------------------------------- Redis lost mid-run


async def test_a_replica_whose_redis_stops_admits_every_request_then_limits_again(
    backend_config: Path, module_tmp: Path
) -> None:
    port = free_port()
    server = contextlib.ExitStack()
    server.enter_context(redis_server(port))
    try:
        with run_router(
            backend_config, module_tmp / "midrun.log", env=router_env(port), timeout=90
        ) as router:
            async with bearer_client(router.url, TOKENS["bob"]) as client:
                await client.list_tools()

                async def limited() -> bool:  # a concurrent batch outruns any refill
                    batch = await asyncio.gather(*(_call(client) for _ in range(2 * BURST)))
                    return any(o is not None for o in batch)

                await wait_until_async(limited, 60, "the shared limit applies")

                server.close()  # redis-server killed while the replica runs
                before = len(router.stderr())
                killed = time.monotonic()
                for _ in range(3):  # far more than the burst: every request admitted
                    batch = await asyncio.gather(*(_call(client) for _ in range(2 * BURST)))
                    assert batch == [None] * (2 * BURST)
                text = router.wait_log("unreachable", start=before)[before:]
                # One warning per WARNING_INTERVAL at most, not one per request.
                most = 1 + int((time.monotonic() - killed) / WARNING_INTERVAL)
                assert 1 <= text.count("shared rate limit:") <= most
                assert f"redis://***@127.0.0.1:{port}/0 unreachable" in text
                assert PASSWORD not in router.stderr()

                server.enter_context(redis_server(port))  # Redis is back (empty)
                await wait_until_async(limited, 60, "requests are limited again")
                router.wait_log("answers again; limits are shared again", start=before)
    finally:
        server.close()


# ------------------------------------------------------------------- no state URL: as before


def test_without_a_state_url_the_buckets_stay_in_the_process(
    backend_config: Path, redis_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_router.auth")
    settings = load_settings(backends_config=str(backend_config), rate_limit_per_second=5.0)
    router = build_router(load_effective_config(settings), settings)
    assert router.limiter is not None and router.limiter.shared is None
    assert "5 requests/s, burst 10 (buckets: in this process)" in caplog.text

    shared_settings = load_settings(
        backends_config=str(backend_config),
        rate_limit_per_second=5.0,
        state_url=state_url(redis_port),
        state_key=STATE_KEY,
    )
    shared = build_router(load_effective_config(shared_settings), shared_settings)
    assert shared.limiter is not None and isinstance(shared.limiter.shared, SharedTokenBucket)
    assert shared.limiter.shared.where == f"redis://***@127.0.0.1:{redis_port}/0"
