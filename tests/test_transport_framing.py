"""Unit tests of the transport package: registry, envelopes, linear-time bounded framing.

End-to-end behaviour (real backends, a real router) is in test_backend_limits.py; these pin
the pieces down where a real backend cannot easily produce the case (a boundary split across
chunks, a cut-off envelope, a clock for the rate limit).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import get_args

import httpx2
import mcp_types as types

from mcp_router.backends.transports import TRANSPORTS, create_transport
from mcp_router.backends.transports.base import TransportLimits, read_envelope, too_large_error
from mcp_router.backends.transports.framing import (
    LimitedEventStream,
    LineReader,
    Oversized,
    StderrLines,
)
from mcp_router.config.models import BackendConfig, Transport

MB = 1024 * 1024


def test_the_registry_matches_the_config_transport_literal_one_to_one() -> None:
    assert set(TRANSPORTS) == set(get_args(Transport))
    for name, url in (("http", "http://h/mcp"), ("sse", "http://h/sse")):
        transport = create_transport(BackendConfig(name="b", url=url), TransportLimits())
        assert type(transport) is TRANSPORTS[name] and transport.name == name
    stdio = create_transport(BackendConfig(name="b", command="x"), TransportLimits())
    assert type(stdio) is TRANSPORTS["stdio"]
    legacy = BackendConfig(name="b", url="http://h/mcp", transport="streamable-http")
    assert type(create_transport(legacy, TransportLimits())) is TRANSPORTS["http"]


def test_envelopes_are_read_from_a_cut_off_message() -> None:
    head = b'{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"xxxx'
    envelope = read_envelope(head)
    assert (envelope.id, envelope.method, envelope.is_response) == (42, None, True)
    # id after a nested value that ends within the prefix
    late = b'{"jsonrpc": "2.0", "result": {"a": [1, "}"]}, "id": "r-7"}'
    assert read_envelope(late).id == "r-7" and read_envelope(late).complete
    # a server request: has a method, so it answers nothing of ours
    request = read_envelope(b'{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","par')
    assert request.method == "sampling/createMessage" and not request.is_response
    # id hidden behind a value the prefix cuts: unknown
    assert read_envelope(b'{"jsonrpc":"2.0","result":{"text":"aaaa').id is None
    assert read_envelope(b"garbage").id is None


def test_line_reader_splits_in_linear_time_and_reports_an_oversized_line_at_once() -> None:
    reader = LineReader(limit=1 * MB)
    chunk = b"x" * (64 * 1024)
    start = time.perf_counter()
    reported: list[bytes | Oversized] = []
    for _ in range(50 * MB // len(chunk)):  # 50 MB with no newline
        reported += reader.feed(chunk)
    elapsed = time.perf_counter() - start
    assert len(reported) == 1 and isinstance(reported[0], Oversized)
    assert elapsed < 2.0, elapsed  # the quadratic splitter took seconds for much less
    # the long line ends; what follows is read normally
    assert reader.feed(b'xxx\n{"a":1}\n{"b"') == [b'{"a":1}']
    assert reader.feed(b":2}\n") == [b'{"b":2}']


def test_an_oversized_line_keeps_its_head_for_the_id() -> None:
    reader = LineReader(limit=100)
    out = reader.feed(b'{"jsonrpc":"2.0","id":9,"result":"' + b"y" * 200 + b'"}\n{"id":1}\n')
    assert isinstance(out[0], Oversized) and out[0].envelope.id == 9
    assert out[1:] == [b'{"id":1}']


def test_stderr_lines_are_cut_and_rate_limited_with_a_dropped_count() -> None:
    now = [0.0]
    logged: list[str] = []
    lines = StderrLines(logged.append, line_bytes=10, per_second=2, burst=3, clock=lambda: now[0])
    lines.feed(b"x" * 1000)  # no newline: cut at once, the rest skipped
    lines.feed(b"x" * 1000 + b"\nshort\n")
    assert logged[0].startswith("xxxxxxxxxx [... line cut at 10 bytes")
    assert logged[1] == "short"
    lines.feed(b"".join(b"line %d\n" % i for i in range(20)))  # burst of 3 left 1 token
    assert len(logged) == 3
    now[0] = 1.2
    lines.feed(b"after\n")
    assert logged[3].startswith("[19 lines dropped: stderr rate limit of 2 lines/s")
    assert logged[4] == "after"


def test_a_long_stderr_flood_reports_its_dropped_count_every_second() -> None:
    now = [0.0]
    logged: list[str] = []
    lines = StderrLines(
        logged.append, line_bytes=100, per_second=0.1, burst=1, clock=lambda: now[0]
    )
    lines.feed(b"first\n")
    for t in (0.3, 0.6, 1.1):  # the bucket stays empty all along
        now[0] = t
        lines.feed(b"flood\n")
    assert logged == [
        "first",
        "[3 lines dropped: stderr rate limit of 0.1 lines/s (MCP_BACKEND_STDERR_LINES_PER_SECOND)]",
    ]
    now[0] = 1.5
    lines.feed(b"flood\n")
    lines.close()
    assert logged[-1].startswith("[1 lines dropped")


class _Chunks(httpx2.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


async def _events(chunks: list[bytes], limit: int, fallback: int | None) -> tuple[bytes, list]:
    dropped: list = []
    stream = LimitedEventStream(
        _Chunks(chunks),
        limit=limit,
        make_error=lambda: too_large_error("web", limit, "an event"),
        fallback_id=fallback,
        on_dropped=dropped.append,
    )
    return b"".join([c async for c in stream]), dropped


async def test_an_sse_event_over_the_limit_becomes_an_error_for_its_request() -> None:
    small = b'event: message\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n'
    big = b'event: message\ndata: {"jsonrpc":"2.0","id":2,"result":{"t":"' + b"z" * 5000
    rest = b'"}}\n\n' + small
    # the boundary of the small event is split across chunks
    body, dropped = await _events([small[:-1], small[-1:], big[:3000], big[3000:], rest], 1000, 7)
    assert body.count(small) == 2 and b"zzz" not in body and not dropped
    error = types.JSONRPCError.model_validate_json(body.split(b"data: ")[2].split(b"\n")[0])
    assert error.id == 2 and "larger than the router's limit" in error.error.message


async def test_an_oversized_event_with_no_id_uses_the_posts_request_id_or_is_dropped() -> None:
    big = b"event: message\ndata: " + b"q" * 5000 + b"\n\n"
    body, _ = await _events([big], 1000, 5)
    assert b'"id": 5' in body
    note = b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":'
    body, dropped = await _events([note + b"q" * 5000 + b"}\n\n"], 1000, None)
    assert body == b"" and dropped[0].method == "notifications/message"
