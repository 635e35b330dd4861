"""Hot reload of the config file: a connected client keeps working while backends are added,
changed and removed, gets ``tools/list_changed``, and a broken file changes nothing."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from mcp_router.config.models import RouterConfig
from mcp_router.reload import diff_configs
from opsupport import bearer_client, sample, scrape
from support import RouterProcess, child_env, run_router, write_config

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


@dataclass
class ReloadStory:
    """What one client saw while the config file was edited four times under a running router:
    beta added (namespace ``b``), changed (namespace ``c``), removed, then a broken file."""

    config: Path
    calls: int = 0
    failures: list[Any] = field(default_factory=list)
    tools_after_add: set[str] = field(default_factory=set)
    beta_after_add: str = ""
    tools_after_change: set[str] = field(default_factory=set)
    beta_after_change: str = ""
    tools_after_remove: set[str] = field(default_factory=set)
    alpha_reconnected: bool | None = None
    alpha_after_reject: str = ""
    tools_after_reject: set[str] = field(default_factory=set)
    log: str = ""
    samples: dict[Any, float] = field(default_factory=dict)


async def _tell_the_story(router: RouterProcess, story: ReloadStory, urls: tuple[str, str]) -> None:
    alpha_url, beta_url = urls
    notes = Notifications()
    async with bearer_client(router.url, message_handler=notes) as client:
        stop = anyio.Event()

        async def keep_calling() -> None:
            # The same client session calls alpha throughout every reload.
            while not stop.is_set():
                try:
                    result = await client.call_tool("a_whoami", {})
                    if result.is_error or result.content[0].text != "alpha":
                        story.failures.append(result)
                except Exception as exc:  # any failure is a dropped client
                    story.failures.append(exc)
                story.calls += 1
                await anyio.sleep(0.02)

        async def tools() -> set[str]:
            return {t.name for t in (await client.list_tools()).tools}

        async def text(tool: str) -> str:
            return str((await client.call_tool(tool, {})).content[0].text)  # type: ignore[union-attr]

        async def alpha_connections() -> int:
            health = await client.call_tool("router_get_backend_health", {"backend_name": "alpha"})
            assert health.structured_content is not None
            return int(health.structured_content["connections"])

        async def reload(*backends: dict[str, Any]) -> None:
            seen = notes.count(LIST_CHANGED)
            write_config(story.config, list(backends))
            await notes.wait_for(LIST_CHANGED, seen)

        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_calling)
            assert "a_whoami" in await tools()
            connections = await alpha_connections()

            await reload(_alpha(alpha_url), _beta(beta_url, "b"))
            story.tools_after_add = await tools()
            story.beta_after_add = await text("b_whoami")

            await reload(_alpha(alpha_url), _beta(beta_url, "c"))
            story.tools_after_change = await tools()
            story.beta_after_change = await text("c_whoami")

            await reload(_alpha(alpha_url))
            story.tools_after_remove = await tools()
            story.alpha_reconnected = await alpha_connections() != connections

            mark = len(router.stderr())
            story.config.write_text("backends:\n  - name: alpha\n    url: [not, a, url\n")
            await anyio.to_thread.run_sync(
                lambda: router.wait_log("config reload (file changed) rejected", start=mark)
            )
            story.alpha_after_reject = await text("a_whoami")
            story.tools_after_reject = await tools()
            await anyio.sleep(0.3)
            stop.set()


@pytest.fixture(scope="module")
def story(alpha_url: str, beta_url: str, module_tmp: Path) -> ReloadStory:
    """Run the reload story once for the module (the file is polled every 0.2 s)."""
    told = ReloadStory(config=module_tmp / "backends.yaml")
    write_config(told.config, [_alpha(alpha_url)])
    env = child_env(MCP_CONFIG_POLL_INTERVAL="0.2")
    with run_router(told.config, module_tmp / "router.log", env=env) as router:
        anyio.run(_tell_the_story, router, told, (alpha_url, beta_url))
        told.log = router.stderr()
        told.samples = scrape(router.base)
    return told


def test_a_connected_client_keeps_calling_through_every_reload(story: ReloadStory) -> None:
    assert story.failures == []
    assert story.calls >= 10


def test_an_added_backend_is_served_after_list_changed(story: ReloadStory) -> None:
    assert {"a_whoami", "b_whoami"} <= story.tools_after_add
    assert story.beta_after_add == "beta"


def test_a_changed_backend_is_served_under_its_new_namespace(story: ReloadStory) -> None:
    assert "c_whoami" in story.tools_after_change
    assert "b_whoami" not in story.tools_after_change
    assert story.beta_after_change == "beta"


def test_a_removed_backend_leaves_the_tool_list_and_the_gauges(story: ReloadStory) -> None:
    assert not any(n.startswith(("b_", "c_")) for n in story.tools_after_remove)
    assert sample(story.samples, "mcp_router_backend_up", backend="alpha") == 1
    assert sample(story.samples, "mcp_router_backend_up", backend="beta") is None


def test_an_unchanged_backend_keeps_its_session_across_reloads(story: ReloadStory) -> None:
    assert story.alpha_reconnected is False


def test_a_broken_file_changes_nothing_that_is_served(story: ReloadStory) -> None:
    assert story.alpha_after_reject == "alpha"
    assert "a_whoami" in story.tools_after_reject


def test_a_rejected_reload_is_logged_with_the_file_and_the_problem(story: ReloadStory) -> None:
    rejected = story.log[story.log.index("config reload (file changed) rejected") :]
    assert str(story.config) in rejected
    assert "backends[0].url" in rejected or "line" in rejected


def test_reloads_are_counted_by_outcome(story: ReloadStory) -> None:
    reloads = "mcp_router_config_reloads_total"
    assert sample(story.samples, reloads, outcome="applied") == 3
    assert sample(story.samples, reloads, outcome="rejected") == 1


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
