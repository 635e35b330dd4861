"""Logs: JSON lines with one record per routed call, text mode, secret redaction, OTel spans."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_router import secrets, telemetry
from mcp_router.config.models import RouterConfig
from mcp_router.logs import JsonFormatter, RedactingFormatter
from mcp_router.routing.forwarder import CallRecord
from mcp_router.settings import RouterSettings
from mcp_router.telemetry import call_logger
from opsupport import bearer_client
from support import child_env, run_router, write_config


@pytest.fixture(scope="module")
def basic_url(start_server: Callable[..., str]) -> str:
    """The basic test backend over streamable HTTP."""
    return start_server("basic", "http", name="logs")


async def _three_calls(url: str) -> None:
    async with bearer_client(url) as client:
        await client.call_tool("basic_lookup", {"key": "k"})
        await client.call_tool("basic_explode", {"reason": "boom"})
        await client.call_tool("basic_whoami", {})


def test_json_logs_one_line_per_routed_call(basic_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "backends.yaml", [{"name": "basic", "url": basic_url}])
    env = {"MCP_LOG_FORMAT": "json"}
    with run_router(config, tmp_path / "router.log", env=child_env(**env)) as router:
        anyio.run(_three_calls, router.url)
        router.wait_log('"tool": "basic_whoami"')
        log = router.stderr()
    records = [json.loads(line) for line in log.splitlines() if line.strip()]  # all JSON
    calls = [r for r in records if r["logger"] == "mcp_router.access"]
    assert [(c["tool"], c["outcome"]) for c in calls] == [
        ("basic_lookup", "success"),
        ("basic_explode", "tool_error"),
        ("basic_whoami", "success"),
    ]
    for call in calls:
        assert call["level"] == "info"
        assert call["backend"] == "basic"
        assert call["kind"] == "tool"
        assert isinstance(call["duration_ms"], float) and call["duration_ms"] > 0
        assert call["attempts"] == 1


def test_text_logs_show_calls_at_debug(basic_url: str, tmp_path: Path) -> None:
    # (At INFO they are left out: see test_call_logger_levels.)
    config = write_config(tmp_path / "backends.yaml", [{"name": "basic", "url": basic_url}])
    with run_router(config, tmp_path / "debug.log", env=child_env(MCP_LOG_LEVEL="DEBUG")) as router:
        anyio.run(_three_calls, router.url)
        debug_log = router.wait_log("tool basic_whoami -> basic: success in")
    assert "DEBUG   mcp_router.access: tool basic_explode -> basic: tool_error in" in debug_log


def _formatted(formatter: logging.Formatter, message: str, *args: Any) -> str:
    try:
        raise RuntimeError("token in traceback: sekrit-value-123")
    except RuntimeError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, __file__, 1, message, args, sys.exc_info())
    return formatter.format(record)


def _install(owner: object, *values: str) -> None:
    """Install ``values`` as secrets (as header values of a throwaway config)."""
    headers = {f"X-Secret-{i}": v for i, v in enumerate(values)}
    config = RouterConfig.model_validate(
        {"backends": [{"name": "t", "url": "http://127.0.0.1:1/mcp", "headers": headers}]}
    )
    secrets.install(owner, config)


def test_redaction_covers_messages_tracebacks_and_json() -> None:
    owner = object()
    _install(owner, "sekrit-value-123", 'quo"te-secret')
    try:
        text = _formatted(
            RedactingFormatter(logging.Formatter("%(message)s")), "url %s", "x?t=sekrit-value-123"
        )
        assert "sekrit-value-123" not in text and "url x?t=***" in text
        data = _formatted(JsonFormatter(), "v=%s", 'quo"te-secret')
        assert "quo" not in data
        assert json.loads(data)["message"] == "v=***"
        assert "sekrit" not in json.loads(data)["exc"]
        assert (
            secrets.redact("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.x.y")
            == "Authorization: Bearer ***"
        )
    finally:
        secrets.uninstall(owner)


def test_call_logger_levels(caplog: pytest.LogCaptureFixture) -> None:
    record = CallRecord("tool", "ns_x", backend="b", outcome="error", attempts=2, duration_ms=1.5)
    record.errors.append("backend 'b': down")
    with caplog.at_level(logging.DEBUG, logger="mcp_router.access"):
        call_logger("json")(record)
        call_logger("text")(record)
    json_rec, text_rec = caplog.records
    assert json_rec.levelno == logging.INFO and text_rec.levelno == logging.DEBUG
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mcp_router.access"):
        call_logger("text")(record)
    assert caplog.records == []  # text logs at INFO: no line per call
    assert json_rec.tool == "ns_x" and json_rec.error == "backend 'b': down"  # type: ignore[attr-defined]


class _Span:
    def __init__(self, name: str, kwargs: dict[str, Any]) -> None:
        self.name, self.kwargs = name, kwargs
        self.status: Any = None
        self.end_time: int | None = None

    def set_status(self, status: Any) -> None:
        self.status = status

    def end(self, end_time: int | None = None) -> None:
        self.end_time = end_time


class _Tracer:
    def __init__(self) -> None:
        self.spans: list[_Span] = []

    def start_span(self, name: str, **kwargs: Any) -> _Span:
        span = _Span(name, kwargs)
        self.spans.append(span)
        return span


def test_one_span_per_routed_call(monkeypatch: pytest.MonkeyPatch) -> None:
    tracer = _Tracer()
    monkeypatch.setattr(telemetry.trace, "get_tracer", lambda *_a, **_k: tracer)
    owner = object()
    _install(owner, "abcd1234")
    try:
        ok = CallRecord(
            "tool", "ns_t", backend="b", outcome="success", attempts=1, duration_ms=12.0
        )
        failed = CallRecord("tool", "ns_u", outcome="no_backend", duration_ms=1.0)
        failed.errors.append("cannot reach https://x/?token=abcd1234")
        telemetry.record_span(ok)
        telemetry.record_span(failed)
    finally:
        secrets.uninstall(owner)
    first, second = tracer.spans
    assert first.name == "route tool ns_t"
    attrs = first.kwargs["attributes"]
    assert attrs["mcp_router.backend"] == "b" and attrs["mcp_router.outcome"] == "success"
    assert first.end_time is not None
    assert first.end_time - first.kwargs["start_time"] == 12_000_000
    assert first.status is None
    assert second.status.status_code.name == "ERROR"
    assert "abcd1234" not in second.status.description


def test_tracing_is_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("MCP_OTLP_ENDPOINT", raising=False)
    assert telemetry.otlp_endpoint(RouterSettings()) is None
    assert telemetry.setup_tracing(RouterSettings()) is False
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert telemetry.otlp_endpoint(RouterSettings()) == "http://127.0.0.1:4318"
    assert telemetry.otlp_endpoint(RouterSettings(otlp_endpoint="http://c:1")) == "http://c:1"
