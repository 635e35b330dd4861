"""Helpers for the operations tests (security, metrics, logging, reload): clients with HTTP
headers, metrics scraping, result text. Routers are started with ``support.run_router``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

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
