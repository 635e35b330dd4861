"""Helpers for the operations tests (security, metrics, logging, reload)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from support import child_env, free_port, router_cmd, spawn, wait_http

MessageHandler = Callable[[Any], Any]


@contextlib.asynccontextmanager
async def bearer_client(
    url: str,
    token: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    message_handler: MessageHandler | None = None,
) -> AsyncIterator[Client]:
    """A handshake-era MCP client over streamable HTTP that sends extra HTTP headers."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    timeout = httpx2.Timeout(30.0, read=120.0)
    async with (
        httpx2.AsyncClient(headers=sent, timeout=timeout) as http,
        Client(
            streamable_http_client(url, http_client=http),
            mode="legacy",
            message_handler=message_handler,
        ) as client,
    ):
        yield client


def result_json(result: Any) -> str:
    """Everything a tool result holds, as one string (to search it for secrets)."""
    return json.dumps(result.model_dump(mode="json", by_alias=True), sort_keys=True)


def scrape(
    base: str, token: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as ``{(sample name, sorted labels): value}``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx2.get(f"{base}/metrics", headers=headers, timeout=5)
    response.raise_for_status()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, /, **labels: str
) -> float | None:
    """One sample's value, or None when absent."""
    return samples.get((metric, tuple(sorted(labels.items()))))


class RouterProcess:
    """A router subprocess over HTTP, its stderr captured in a file."""

    def __init__(self, proc: subprocess.Popen[Any], base: str, log: Path) -> None:
        self.proc = proc
        self.base = base
        self.url = f"{base}/mcp"
        self.log = log

    def stderr(self) -> str:
        """What the router has logged so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, needle: str, timeout: float = 15.0, start: int = 0) -> str:
        """Wait until the log (from character ``start`` on) contains ``needle``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.stderr()
            if needle in text[start:]:
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"router exited ({self.proc.returncode}):\n{text[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not logged within {timeout}s:\n{self.stderr()[-3000:]}")


@contextlib.contextmanager
def run_router(
    config: Path,
    log: Path,
    *,
    transport: str = "http",
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[RouterProcess]:
    """Start the router on a free loopback port; yield once /ready says ready."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = router_cmd(config, "--transport", transport, "--port", str(port))
    with (
        log.open("w", encoding="utf-8") as err,
        spawn(cmd, env=child_env(**(env or {})), stderr=err) as proc,
    ):
        wait_http(f"{base}/health", timeout, proc)
        deadline = time.monotonic() + timeout
        while httpx2.get(f"{base}/ready", timeout=2).status_code != 200:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"router not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield RouterProcess(proc, base, log)
