"""Three router replicas behind HAProxy (round robin per request), sharing state in Redis.

Real processes only: Debian ``redis-server``, HAProxy (``tests/cluster.py``), three
``mcp-router --transport http`` replicas sharing one config, with the protocol test backend
(``tests/servers/protocol.py``) over streamable HTTP behind them, and the mcp SDK client.
Every response names the replica that served it (``X-Served-By``), so each test shows that
its requests really landed on different replicas.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from cluster import (
    HAPROXY,
    REDIS_SERVER,
    haproxy,
    port_of,
    redis_server,
    replica_env,
    replica_set,
)
from support import (
    child_env,
    free_port,
    router_cmd,
    spawn,
    wait_http,
    wait_until,
    wait_until_async,
    write_config,
)

pytestmark = [
    pytest.mark.xdist_group("replicas"),
    pytest.mark.skipif(not (REDIS_SERVER and HAPROXY), reason="needs redis-server and haproxy"),
    pytest.mark.timeout(240),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

NS = "proto"
WATCHED = "proto://watched"
WATCHED_EXPOSED = "proto://proto/watched"
PASSWORD = "redis-pass-4f1c9a7e2b"
INIT_PARAMS = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "probe", "version": "0"},
}


class Cluster:
    """The replica set under test: its routers, HAProxy's URL, the Redis URL."""

    def __init__(self, routers: dict[str, Any], base: str, state_url: str, redis: Any) -> None:
        self.routers = routers
        self.base = base
        self.url = f"{base}/mcp"
        self.state_url = state_url
        self.redis_port = int(state_url.rsplit(":", 1)[1].split("/")[0])
        self._redis = redis  # the ExitStack holding the running redis-server

    def stop_redis(self) -> None:
        self._redis.close()

    def start_redis(self) -> None:
        self._redis = contextlib.ExitStack()
        self._redis.enter_context(redis_server(self.redis_port, password=PASSWORD))

    def status(self, name: str) -> dict[str, Any]:
        return httpx2.get(f"{self.routers[name].base}/status.json", timeout=5).json()

    def state_totals(self, key: str) -> int:
        return sum(self.status(name)["state_store"][key] for name in self.routers)


@pytest.fixture(scope="module")
def proto_url(start_server: Callable[..., str]) -> str:
    """The protocol backend over streamable HTTP, shared by every replica."""
    return start_server("protocol", "http")


@pytest.fixture(scope="module")
def config(proto_url: str, module_tmp: Path) -> Path:
    # era: legacy: the protocol backend asks only by server-to-client requests, which a
    # 2026-07-28 connection cannot carry; these tests show the router's own rounds (and
    # sessions) crossing replicas, so 2026-07-28 clients are served through router rounds.
    return write_config(
        module_tmp / "replicas.yaml", [{"name": NS, "url": proto_url, "era": "legacy"}]
    )


@pytest.fixture(scope="module")
def cluster(config: Path, module_tmp: Path) -> Iterator[Cluster]:
    redis = contextlib.ExitStack()
    state_url, _ = redis.enter_context(redis_server(password=PASSWORD))
    cluster = None
    try:
        with (
            replica_set(config, state_url, module_tmp) as routers,
            haproxy({name: port_of(r) for name, r in routers.items()}, module_tmp) as base,
        ):
            cluster = Cluster(routers, base, state_url, redis)
            yield cluster
    finally:
        (cluster._redis if cluster is not None else redis).close()


class Served:
    """Records which replica served each HTTP request of a client (HAProxy's X-Served-By)."""

    def __init__(self) -> None:
        self.by: list[str] = []
        self.session_id: str | None = None

    async def hook(self, response: httpx2.Response) -> None:
        name = response.headers.get("x-served-by")
        if name and response.request.method == "POST":  # a GET stream answers at any time
            self.by.append(name)
        self.session_id = response.headers.get("mcp-session-id") or self.session_id

    def http(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            timeout=httpx2.Timeout(60.0, read=60.0), event_hooks={"response": [self.hook]}
        )


def client(url: str, served: Served, mode: str = "legacy", **callbacks: Any) -> Client:
    """An SDK client whose every request goes through HAProxy (and may land anywhere)."""
    transport = streamable_http_client(url, http_client=served.http())
    return Client(transport, mode=mode, **callbacks)


def session_headers(sid: str) -> dict[str, str]:
    """Headers of a raw legacy request in session ``sid``."""
    return {
        "mcp-session-id": sid,
        "mcp-protocol-version": "2025-11-25",
        "accept": "application/json, text/event-stream",
    }


def text_of(result: types.CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


# ------------------------------------------------------------------------------- sessions


async def test_a_legacy_session_continues_on_every_replica(cluster: Cluster) -> None:
    served = Served()
    restored_before = cluster.state_totals("sessions_restored")
    async with client(cluster.url, served) as mcp:
        for i in range(9):
            result = await mcp.call_tool(f"{NS}_progress", {"tag": f"t{i}", "steps": 1})
            assert not result.is_error, text_of(result)
        tools = await mcp.list_tools()
        assert f"{NS}_progress" in {t.name for t in tools.tools}
    # the initialize, the calls, the list and the DELETE went to all three replicas, and the
    # two that did not initialize it restored the session (no re-initialize by the client)
    assert set(served.by) == {"r0", "r1", "r2"}, Counter(served.by)
    assert cluster.state_totals("sessions_restored") - restored_before >= 2


async def test_progress_and_logs_reach_the_caller_on_any_replica(cluster: Cluster) -> None:
    served = Served()
    logs: list[str] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(str(params.data.get("msg") if isinstance(params.data, dict) else params.data))

    async with client(cluster.url, served, logging_callback=on_log) as mcp:
        for i in range(6):
            steps: list[float] = []

            async def on_progress(
                progress: float,
                total: float | None,
                message: str | None,
                steps: list[float] = steps,
            ) -> None:
                steps.append(progress)

            result = await mcp.call_tool(
                f"{NS}_progress", {"tag": f"p{i}", "steps": 3}, progress_callback=on_progress
            )
            assert not result.is_error, text_of(result)
            assert len(steps) == 3, (i, steps)
            await mcp.call_tool(f"{NS}_log", {"tag": f"log{i}", "level": "warning"})
        await wait_until_async(
            lambda: len([x for x in logs if x.startswith("log")]) >= 6, 10, "logs"
        )
    assert len(set(served.by)) == 3, Counter(served.by)


async def test_the_log_level_set_through_one_replica_holds_on_the_others(cluster: Cluster) -> None:
    served = Served()
    logs: list[str] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(str(params.data.get("msg") if isinstance(params.data, dict) else params.data))

    async with client(cluster.url, served, logging_callback=on_log) as mcp:
        await mcp.set_logging_level("error")
        for i in range(6):  # every replica serves some of these
            await mcp.call_tool(f"{NS}_log", {"tag": f"quiet{i}", "level": "info"})
        await mcp.call_tool(f"{NS}_log", {"tag": "loud", "level": "error"})
        await wait_until_async(lambda: "loud" in logs, 10, "the error-level log")
    assert not [x for x in logs if x.startswith("quiet")], logs
    assert len(set(served.by)) == 3, Counter(served.by)


async def test_a_sampling_answer_posted_to_another_replica_reaches_the_asking_one(
    cluster: Cluster,
) -> None:
    served = Served()
    asked: list[str] = []

    async def on_sampling(context: Any, params: types.CreateMessageRequestParams) -> Any:
        asked.append("x")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="from-client"), model="m"
        )

    forwarded_before = cluster.state_totals("answers_forwarded")
    async with client(cluster.url, served, sampling_callback=on_sampling) as mcp:
        for i in range(6):
            result = await mcp.call_tool(f"{NS}_ask_sample", {"tag": f"s{i}"})
            assert not result.is_error, text_of(result)
            assert "from-client" in text_of(result)
    assert len(asked) == 6
    # round robin: the answer POST of a call lands on another replica than the call itself
    assert cluster.state_totals("answers_forwarded") - forwarded_before >= 3


async def test_a_subscription_update_reaches_the_get_stream_held_by_another_replica(
    cluster: Cluster,
) -> None:
    import redis

    store = redis.Redis.from_url(cluster.state_url)
    served = Served()
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(message.params.uri)

    forwarded_before = cluster.state_totals("notifications_forwarded")
    async with client(cluster.url, served, message_handler=on_message) as mcp:
        sid = served.session_id
        assert sid is not None
        holder = await wait_until_async(
            lambda: store.get(f"mcp-router:stream:{sid}"), 15, "the client's GET stream is open"
        )
        for _ in range(3):  # round robin: one of the next subscribes lands elsewhere
            await mcp.subscribe_resource(WATCHED_EXPOSED)
            if served.by[-1] != holder.decode():
                break
            await mcp.unsubscribe_resource(WATCHED_EXPOSED)
        assert served.by[-1] != holder.decode(), (served.by, holder)
        subscribed_on = served.by[-1]
        served_touch = Served()
        async with client(cluster.url, served_touch) as other:
            result = await other.call_tool(f"{NS}_touch", {"uri": WATCHED})
            assert not result.is_error, text_of(result)
            await wait_until_async(lambda: WATCHED_EXPOSED in updates, 10, "resources/updated")
            assert cluster.state_totals("notifications_forwarded") > forwarded_before
            # unsubscribing through a replica that does not hold the subscription ends it
            elsewhere = next(n for n in cluster.routers if n != subscribed_on)
            async with httpx2.AsyncClient(timeout=10) as http:
                answer = await http.post(
                    cluster.routers[elsewhere].url,
                    json={
                        "jsonrpc": "2.0",
                        "id": 990,
                        "method": "resources/unsubscribe",
                        "params": {"uri": WATCHED_EXPOSED},
                    },
                    headers=session_headers(sid),
                )
                assert answer.status_code == 200, answer.text

            async def backend_unsubscribed() -> bool:
                # the subscribing replica dropped the backend subscription: nobody is notified
                result = await other.call_tool(f"{NS}_touch", {"uri": WATCHED})
                return text_of(result) == "notified 0"

            await wait_until_async(backend_unsubscribed, 10, "the unsubscribe crossed replicas")


async def test_a_deleted_session_is_gone_on_every_replica(cluster: Cluster) -> None:
    served = Served()
    async with client(cluster.url, served) as mcp:
        for i in range(3):
            await mcp.call_tool(f"{NS}_progress", {"tag": f"d{i}", "steps": 1})
    sid = served.session_id
    assert sid is not None
    ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
    headers = session_headers(sid)
    async with httpx2.AsyncClient(timeout=10) as http:
        for name, router in cluster.routers.items():
            answer = await http.post(router.url, json=ping, headers=headers)
            assert answer.status_code == 404, (name, answer.status_code, answer.text)


async def test_a_2026_client_works_on_any_replica(cluster: Cluster) -> None:
    served = Served()
    async with client(cluster.url, served, mode="auto") as mcp:
        for i in range(6):
            result = await mcp.call_tool(f"{NS}_progress", {"tag": f"m{i}", "steps": 1})
            assert not result.is_error, text_of(result)
    assert len(set(served.by)) == 3, Counter(served.by)
    assert served.session_id is None  # stateless: nothing to share


async def test_a_2026_multi_round_trip_retry_may_land_on_any_replica(cluster: Cluster) -> None:
    served = Served()

    async def on_sampling(context: Any, params: types.CreateMessageRequestParams) -> Any:
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="modern-answer"),
            model="m",
        )

    async with client(cluster.url, served, mode="auto", sampling_callback=on_sampling) as mcp:
        assert mcp.protocol_version == "2026-07-28"
        for i in range(4):  # call and retry go to different replicas (round robin)
            before = len(served.by)
            result = await mcp.call_tool(f"{NS}_ask_sample", {"tag": f"mr{i}"})
            assert not result.is_error, text_of(result)
            assert "modern-answer" in text_of(result)
            assert len(set(served.by[before:])) >= 2, served.by[before:]


async def test_the_replica_id_shows_in_management_output_and_status(cluster: Cluster) -> None:
    served = Served()
    seen = set()
    async with client(cluster.url, served) as mcp:
        for _ in range(6):
            result = await mcp.call_tool("router_list_backends", {})
            seen.add(result.structured_content["replica"])
    # the calls were answered by several replicas, each naming itself as HAProxy names it
    assert len(seen) >= 2 and seen <= set(served.by), (seen, Counter(served.by))
    for name in cluster.routers:
        status = cluster.status(name)
        assert status["replica"] == name
        assert status["state_store"]["reachable"] is True
        assert PASSWORD not in str(status)
        assert (
            "mcp-router" in cluster.routers[name].stderr()
            and name in cluster.routers[name].stderr()
        )


# ------------------------------------------------------------------------------- faults


async def test_redis_lost_while_running_keeps_held_sessions_and_refuses_new_ones(
    cluster: Cluster,
) -> None:
    served = Served()
    async with client(cluster.url, served) as mcp:
        for i in range(6):  # every replica now holds a copy of this session
            await mcp.call_tool(f"{NS}_progress", {"tag": f"h{i}", "steps": 1})
        assert set(served.by) == {"r0", "r1", "r2"}
        cluster.stop_redis()
        try:
            for i in range(6):
                result = await mcp.call_tool(f"{NS}_progress", {"tag": f"down{i}", "steps": 1})
                assert not result.is_error, text_of(result)

            def all_not_ready() -> bool:
                return all(
                    httpx2.get(f"{r.base}/ready", timeout=5).status_code == 503
                    for r in cluster.routers.values()
                )

            wait_until(all_not_ready, 15, "every replica reports not ready")
            reason = httpx2.get(f"{cluster.routers['r0'].base}/ready", timeout=5).json()["reason"]
            assert f"redis://***@127.0.0.1:{cluster.redis_port}/0" in reason, reason
            assert PASSWORD not in reason
            with pytest.raises(BaseException) as refused:
                async with client(cluster.url, Served()) as fresh:
                    await fresh.list_tools()
            assert "cannot open a session: state store redis://***@" in repr(refused.value)
        finally:
            cluster.start_redis()

        def all_ready() -> bool:
            return all(
                httpx2.get(f"{r.base}/ready", timeout=5).status_code == 200
                for r in cluster.routers.values()
            )

        wait_until(all_ready, 20, "every replica ready again once Redis is back")
        # Redis restarted empty: the held session is written back by the replicas holding
        # it and continues on every replica; a new session is shared again
        for i in range(6):
            result = await mcp.call_tool(f"{NS}_progress", {"tag": f"again{i}", "steps": 1})
            assert not result.is_error, text_of(result)
        async with client(cluster.url, Served()) as fresh:
            for i in range(3):
                result = await fresh.call_tool(f"{NS}_progress", {"tag": f"back{i}", "steps": 1})
                assert not result.is_error
    for router in cluster.routers.values():
        assert PASSWORD not in router.stderr()


async def test_a_replica_killed_under_load_breaks_no_session(cluster: Cluster) -> None:
    clients, rounds = 8, 12
    done = [0] * clients
    failed = [0] * clients
    killed = anyio.Event()

    async def worker(n: int) -> None:
        async with client(cluster.url, Served()) as mcp:
            for i in range(rounds):
                if n == 0 and i == 3:
                    os.kill(cluster.routers["r2"].proc.pid, signal.SIGKILL)
                    killed.set()
                try:
                    result = await mcp.call_tool(
                        f"{NS}_progress", {"tag": f"k{n}-{i}", "steps": 2, "delay": 0.05}
                    )
                    assert not result.is_error, text_of(result)
                    done[n] += 1
                except (MCPError, httpx2.HTTPError, anyio.EndOfStream, OSError) as exc:
                    failed[n] += 1
                    assert killed.is_set(), exc  # nothing fails before the kill

    async with anyio.create_task_group() as tg:
        for n in range(clients):
            tg.start_soon(worker, n)
    cluster.routers["r2"].proc.wait(timeout=10)
    # each client has one call in flight at a time: at most one failure per client, and
    # every client finished its rounds through the other replicas
    assert all(f <= 1 for f in failed), failed
    assert sum(done) + sum(failed) == clients * rounds
    assert sum(failed) <= clients


# ------------------------------------------------------------------------------- start-up


def test_a_state_url_without_a_state_key_refuses_to_start(config: Path) -> None:
    env = child_env(MCP_STATE_URL=f"redis://:{PASSWORD}@127.0.0.1:1/0")
    env.pop("MCP_STATE_KEY", None)
    done = subprocess.run(
        router_cmd(config, "--transport", "http", "--port", "1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "MCP_STATE_KEY" in done.stderr and "MCP_STATE_URL" in done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr


def test_redis_down_at_start_reports_not_ready_until_it_answers(
    config: Path, module_tmp: Path
) -> None:
    port = free_port()
    state_url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    router_port = free_port()
    log = module_tmp / "down-at-start.log"
    env = replica_env("lonely", state_url)
    with (
        log.open("wb") as stderr,
        spawn(
            router_cmd(config, "--transport", "http", "--port", str(router_port)),
            env=env,
            stderr=stderr,
        ) as proc,
    ):
        base = f"http://127.0.0.1:{router_port}"
        wait_http(f"{base}/ready", 90, proc, status=503)

        def reason() -> str:
            answer = httpx2.get(f"{base}/ready", timeout=5)
            body = answer.json()
            return body.get("reason", "") if body.get("discovery_done") else ""

        text = wait_until(lambda: "state store" in reason() and reason(), 90, "the state reason")
        assert f"redis://***@127.0.0.1:{port}/0" in text and PASSWORD not in text
        logged = log.read_text()
        assert f"redis://***@127.0.0.1:{port}/0" in logged and PASSWORD not in logged
        refused = httpx2.post(
            f"{base}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT_PARAMS},
            headers={"accept": "application/json, text/event-stream"},
            timeout=10,
        )
        assert refused.status_code == 503 and "state store" in refused.text, refused.text
        with redis_server(port, password=PASSWORD):
            wait_http(f"{base}/ready", 30, proc, status=200)
