"""Splitting what a backend sends into messages, in linear time and bounded memory.

- `LineReader`: newline-delimited JSON-RPC (stdio stdout). Each chunk is scanned once; a line
  that grows past the limit is reported at once (`Oversized`, with its first bytes, to read
  its id from) and the rest of it is skipped without being kept.
- `StderrLines`: a stdio child's stderr, for the log: lines cut at a length cap (with a
  marker saying so) and a per-backend rate limit (token bucket) with "N lines dropped" notes.
- `LimitedEventStream`: an HTTP response body of server-sent events, passed on one complete
  event at a time; an event past the limit is replaced by a synthetic error event for the
  request it answers, so that call fails with a clear error and the stream lives on.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx2
import mcp_types as types

from mcp_router.backends.transports.base import ENVELOPE_PREFIX, Envelope, read_envelope

# While lines are being dropped, how often the count so far is logged.
_NOTE_EVERY = 1.0


@dataclass(frozen=True)
class Oversized:
    """A message that passed the size limit: its first bytes (for its envelope) and the limit."""

    head: bytes
    limit: int

    @property
    def envelope(self) -> Envelope:
        """The id and method the message's first bytes show."""
        return read_envelope(self.head)


class LineReader:
    """Newline-delimited messages from a byte stream; lines over ``limit`` become `Oversized`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: list[bytes] = []  # pieces of the current line, joined once it ends
        self._size = 0
        self._skipping = False  # inside a line already reported as oversized

    def feed(self, chunk: bytes) -> list[bytes | Oversized]:
        """The complete lines (and oversized reports) that ``chunk`` finishes."""
        out: list[bytes | Oversized] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if self._skipping:
                pass
            elif self._size + len(piece) > self.limit:
                head = b"".join(self._parts)[:ENVELOPE_PREFIX]
                head += piece[: ENVELOPE_PREFIX - len(head)]
                out.append(Oversized(head, self.limit))
                self._parts, self._size, self._skipping = [], 0, True
            elif end >= 0:
                line = b"".join(self._parts) + piece if self._parts else piece
                self._parts, self._size = [], 0
                if line.strip():
                    out.append(line)
            elif piece:
                self._parts.append(piece)
                self._size += len(piece)
            if end < 0:
                return out
            self._skipping = False  # the oversized line ended here
            start = end + 1


class StderrLines:
    """Turns a child's stderr bytes into log lines: length cap and rate limit.

    ``emit`` gets each line to log (already decoded). Over-long lines are cut at
    ``line_bytes`` with a marker; beyond ``per_second`` lines a second (``burst`` at once)
    lines are dropped and counted; the count is logged with the next line that passes, every
    second while the flood goes on, and by `close`.
    """

    def __init__(
        self,
        emit: Callable[[str], None],
        *,
        line_bytes: int,
        per_second: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._cap = line_bytes
        self._rate = per_second
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()
        self._noted = self._last  # when the dropped count was last logged
        self._dropped = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._cut = False  # the current line was already logged, cut short

    def feed(self, chunk: bytes) -> None:
        """Log the lines ``chunk`` completes (or cuts short)."""
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not self._cut:
                room = self._cap - self._size
                if len(piece) > room:
                    self._parts.append(piece[:room])
                    self._line(b"".join(self._parts), cut=True)
                    self._parts, self._size, self._cut = [], 0, True
                elif end >= 0:
                    self._parts.append(piece)
                    self._line(b"".join(self._parts), cut=False)
                    self._parts, self._size = [], 0
                else:
                    self._parts.append(piece)
                    self._size += len(piece)
            if end < 0:
                return
            self._cut = False
            start = end + 1

    def _note(self, now: float) -> None:
        self._emit(
            f"[{self._dropped} lines dropped: stderr rate limit of "
            f"{self._rate:g} lines/s (MCP_BACKEND_STDERR_LINES_PER_SECOND)]"
        )
        self._dropped, self._noted = 0, now

    def close(self) -> None:
        """End of stderr: log what is left and the count of dropped lines."""
        if self._parts and not self._cut:
            self._line(b"".join(self._parts), cut=False)
        self._parts = []
        if self._dropped:
            self._emit(f"[{self._dropped} lines dropped: stderr rate limit]")
            self._dropped = 0

    def _line(self, raw: bytes, *, cut: bool) -> None:
        text = raw.decode("utf-8", "replace").rstrip()
        if not text:
            return
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            self._dropped += 1
            if now - self._noted >= _NOTE_EVERY:
                self._note(now)  # a flood that goes on is reported as it goes
            return
        self._tokens -= 1
        if self._dropped:
            self._note(now)
        if cut:
            text += f" [... line cut at {self._cap} bytes (MCP_BACKEND_STDERR_LINE_BYTES)]"
        self._emit(text)


def _first_boundary(buffer: bytearray, start: int) -> int:
    """End index of the first blank line (event boundary) at or after ``start``; 0 if none."""
    ends = [at + len(sep) for sep in (b"\n\n", b"\r\n\r\n") if (at := buffer.find(sep, start)) >= 0]
    return min(ends) if ends else 0


def _event_envelope(head: bytes) -> Envelope:
    """The envelope of the JSON in an event's first ``data:`` field."""
    at = head.find(b"data:")
    if at < 0:
        return Envelope(None, None, False)
    return read_envelope(head[at + 5 :].lstrip(b" "))


def error_event(request_id: types.RequestId, error: types.ErrorData) -> bytes:
    """A server-sent ``message`` event carrying a JSON-RPC error for ``request_id``."""
    body = {"jsonrpc": "2.0", "id": request_id, "error": error.model_dump(mode="json")}
    return b"event: message\ndata: " + json.dumps(body).encode() + b"\n\n"


class LimitedEventStream(httpx2.AsyncByteStream):
    """An SSE body passed on whole events; an event over ``limit`` bytes is replaced.

    It is replaced by an error event for the request whose id it carries (read from its first
    bytes), else for ``fallback_id`` (the request a POST's stream answers). With neither (an
    oversized notification or server request on a GET stream) it is dropped and
    ``on_dropped`` gets its envelope (to decide whether the session survives that).
    """

    def __init__(
        self,
        inner: httpx2.AsyncByteStream,
        *,
        limit: int,
        make_error: Callable[[], types.ErrorData],
        fallback_id: types.RequestId | None,
        on_dropped: Callable[[Envelope], None],
    ) -> None:
        self._inner = inner
        self._limit = limit
        self._make_error = make_error
        self._fallback_id = fallback_id
        self._on_dropped = on_dropped

    async def __aiter__(self) -> AsyncIterator[bytes]:
        buffer = bytearray()
        scanned = 0  # everything before this was searched for a boundary already
        skipping = False  # inside an event already replaced
        async for chunk in self._inner:
            buffer += chunk
            if skipping:
                first = _first_boundary(buffer, 0)
                if not first:
                    del buffer[:-3]  # keep only what a boundary split across chunks needs
                    continue
                del buffer[:first]  # the oversized event ended: what follows is new
                skipping, scanned = False, 0
            pieces: list[bytes] = []
            start, search = 0, max(0, scanned - 3)
            while end := _first_boundary(buffer, search):
                if end - start > self._limit:
                    pieces += self._replace(bytes(buffer[start : start + ENVELOPE_PREFIX]))
                else:
                    pieces.append(bytes(buffer[start:end]))
                start = search = end
            del buffer[:start]
            scanned = len(buffer)
            if len(buffer) > self._limit:
                pieces += self._replace(bytes(buffer[:ENVELOPE_PREFIX]))
                del buffer[:-3]
                skipping = True
            if pieces:
                yield b"".join(pieces)
        if buffer and not skipping:
            yield bytes(buffer)

    def _replace(self, head: bytes) -> list[bytes]:
        """What an oversized event (``head``: its first bytes) is replaced with."""
        envelope = _event_envelope(head)
        target = envelope.id if envelope.is_response else None
        if target is None and envelope.method is None:
            target = self._fallback_id
        if target is not None:
            return [error_event(target, self._make_error())]
        self._on_dropped(envelope)
        return []

    async def aclose(self) -> None:
        await self._inner.aclose()
