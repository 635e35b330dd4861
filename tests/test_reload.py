"""Hot reload of the config file: a connected client keeps working while backends are added,
changed and removed, gets ``tools/list_changed``, and a broken file changes nothing."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from mcp_router.config.models import BackendConfig, RouterConfig
from mcp_router.reload import diff_configs
from opsupport import bearer_client, sample, scrape
from support import child_env, run_router, write_config

LIST_CHANGED = "notifications/tools/list_changed"


@pytest.fixture(scope="module")
def alpha_url(start_server: Callable[..., str]) -> str:
    """A basic backend whose ``whoami`` answers ``alpha``."""
    return start_server("basic", "http", name="alpha")


@pytest.fixture(scope="module")
def beta_url(start_server: Callable[..., str]) -> str:
    """A basic backend whose ``whoami`` answers ``beta``."""
    return start_server("basic", "http", name="beta")


def _alpha(url: str) -> dict[str, Any]:
    return {"name": "alpha", "url": url, "namespace": "a", "connect_timeout_seconds": 5}


def _beta(url: str, namespace: str) -> dict[str, Any]:
    return {"name": "beta", "url": url, "namespace": namespace, "connect_timeout_seconds": 5}


class Notifications:
    """Records the methods of the notifications a client receives."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self._arrived: anyio.Event | None = None

    async def __call__(self, message: Any) -> None:
        method = getattr(message, "method", None)
        if method is not None:
            self.methods.append(method)
            if self._arrived is not None:
                self._arrived.set()

    def count(self, method: str) -> int:
        return self.methods.count(method)

    async def wait_for(self, method: str, more_than: int, timeout: float = 15.0) -> None:
        """Wait until more than ``more_than`` notifications ``method`` have arrived."""
        with anyio.fail_after(timeout):
            while self.count(method) <= more_than:
                self._arrived = anyio.Event()
                await self._arrived.wait()


def test_reload_add_change_remove_and_reject(alpha_url: str, beta_url: str, tmp_path: Path) -> None:
    config = tmp_path / "backends.yaml"
    write_config(config, [_alpha(alpha_url)])
    env = {"MCP_CONFIG_POLL_INTERVAL": "0.2"}
    with run_router(config, tmp_path / "router.log", env=child_env(**env)) as router:
        notes = Notifications()

        async def scenario() -> dict[str, Any]:
            out: dict[str, Any] = {"calls": 0, "failures": []}
            async with bearer_client(router.url, message_handler=notes) as client:
                stop = anyio.Event()

                async def keep_calling() -> None:
                    # The same client session calls alpha throughout every reload.
                    while not stop.is_set():
                        try:
                            result = await client.call_tool("a_whoami", {})
                            if result.is_error or result.content[0].text != "alpha":
                                out["failures"].append(result)
                        except Exception as exc:  # any failure is a dropped client
                            out["failures"].append(exc)
                        out["calls"] += 1
                        await anyio.sleep(0.02)

                async def tools() -> set[str]:
                    return {t.name for t in (await client.list_tools()).tools}

                async def health(name: str) -> dict[str, Any]:
                    result = await client.call_tool(
                        "router_get_backend_health", {"backend_name": name}
                    )
                    assert result.structured_content is not None
                    return result.structured_content

                async with anyio.create_task_group() as tg:
                    tg.start_soon(keep_calling)
                    assert "a_whoami" in await tools()
                    alpha_connections = (await health("alpha"))["connections"]

                    # (a) add beta: its tools appear, clients are told.
                    seen = notes.count(LIST_CHANGED)
                    write_config(config, [_alpha(alpha_url), _beta(beta_url, "b")])
                    await notes.wait_for(LIST_CHANGED, seen)
                    assert {"a_whoami", "b_whoami"} <= await tools()
                    assert (await client.call_tool("b_whoami", {})).content[0].text == "beta"

                    # (c) change beta (namespace b -> c): beta restarts, alpha does not.
                    seen = notes.count(LIST_CHANGED)
                    write_config(config, [_alpha(alpha_url), _beta(beta_url, "c")])
                    await notes.wait_for(LIST_CHANGED, seen)
                    names = await tools()
                    assert "c_whoami" in names and "b_whoami" not in names
                    assert (await client.call_tool("c_whoami", {})).content[0].text == "beta"

                    # (b) remove beta: its tools vanish.
                    seen = notes.count(LIST_CHANGED)
                    write_config(config, [_alpha(alpha_url)])
                    await notes.wait_for(LIST_CHANGED, seen)
                    names = await tools()
                    assert not any(n.startswith(("b_", "c_")) for n in names)
                    out["alpha_reconnected"] = (await health("alpha"))["connections"] != (
                        alpha_connections
                    )

                    # (d) a broken file is rejected; the running config keeps serving.
                    mark = len(router.stderr())
                    config.write_text("backends:\n  - name: alpha\n    url: [not, a, url\n")
                    await anyio.to_thread.run_sync(
                        lambda: router.wait_log("config reload (file changed) rejected", start=mark)
                    )
                    out["after_reject"] = (await client.call_tool("a_whoami", {})).content[0].text
                    out["tools_after_reject"] = await tools()
                    await anyio.sleep(0.3)
                    stop.set()
            return out

        out = anyio.run(scenario)
        assert out["failures"] == []
        assert out["calls"] >= 10
        assert out["alpha_reconnected"] is False  # its session survived every reload
        assert out["after_reject"] == "alpha"
        assert "a_whoami" in out["tools_after_reject"]
        log = router.stderr()
        rejected_at = log.index("config reload (file changed) rejected")
        assert str(config) in log[rejected_at:]  # the log line names the file ...
        assert "backends[0].url" in log[rejected_at:] or "line" in log[rejected_at:]  # ... and why
        samples = scrape(router.base)
        assert sample(samples, "mcp_router_config_reloads_total", outcome="applied") == 3
        assert sample(samples, "mcp_router_config_reloads_total", outcome="rejected") == 1
        # The removed backend left the gauges.
        assert sample(samples, "mcp_router_backend_up", backend="alpha") == 1
        assert sample(samples, "mcp_router_backend_up", backend="beta") is None


def test_sighup_reloads_when_watching_is_off(alpha_url: str, beta_url: str, tmp_path: Path) -> None:
    config = tmp_path / "backends.yaml"
    write_config(config, [_alpha(alpha_url)])
    env = {"MCP_WATCH_CONFIG": "false"}
    with run_router(config, tmp_path / "router.log", env=child_env(**env)) as router:
        write_config(config, [_alpha(alpha_url), _beta(beta_url, "b")])
        time.sleep(1.5)  # longer than the default poll interval: nothing happens
        assert httpx2.get(f"{router.base}/ready").json()["backends"] == 1
        os.kill(router.proc.pid, signal.SIGHUP)
        router.wait_log("config reloaded (SIGHUP)")
        assert httpx2.get(f"{router.base}/ready").json()["backends"] == 2
        assert "added beta" in router.stderr()


def _config(*backends: dict[str, Any], **routing: Any) -> RouterConfig:
    return RouterConfig.model_validate({"routing": routing, "backends": list(backends)})


def test_diff_configs() -> None:
    a = {"name": "a", "url": "http://127.0.0.1:1/mcp"}
    b = {"name": "b", "command": "x"}
    old = _config(a, b)
    assert diff_configs(old, _config(a, b)).empty
    diff = diff_configs(old, _config(a, {**b, "args": ["--v"]}, {"name": "c", "command": "y"}))
    assert [c.name for c in diff.changed] == ["b"]
    assert [c.name for c in diff.added] == ["c"]
    assert diff.removed == [] and not diff.routing_changed
    diff = diff_configs(old, _config(a, {**b, "enabled": False}))
    assert diff.removed == ["b"]  # disabled counts as removed
    diff = diff_configs(old, _config(b, a))
    assert diff.order_changed and not diff.changed
    diff = diff_configs(old, _config(a, b, request_timeout_seconds=5))
    assert diff.routing_changed and not (diff.added or diff.removed or diff.changed)
    assert "routing settings updated" in diff.describe()
    assert isinstance(old.backends[0], BackendConfig)
