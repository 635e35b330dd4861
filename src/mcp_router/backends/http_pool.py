"""An HTTP transport that keeps backend connections alive across MCP calls.

The SDK's streamable HTTP client closes each POST's SSE response as soon as the JSON-RPC
answer has arrived, a moment before the server sends the end of the chunked body. httpx then
sees an unfinished response and drops the connection, so every call pays a new TCP connect
(measured: exactly one connect per call). This transport wraps each response stream so that
closing it first reads what is left, for a few milliseconds at most; a finished response goes
back to the pool and the next call reuses the connection. Long-lived streams (the standalone
GET stream, a response cut short) are still closed after that short bound.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2

# Long enough for the chunked terminator that follows the last event, short enough that
# closing a stream that is really still open costs nothing noticeable.
_DRAIN_SECONDS = 0.05
_DRAIN_MAX_BYTES = 64 * 1024


class _DrainOnClose(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self._inner = inner
        self._iterator: AsyncIterator[bytes] | None = None
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = aiter(self._inner)
        async for chunk in self._iterator:
            yield chunk
        self._done = True

    async def aclose(self) -> None:
        try:
            if not self._done and self._iterator is not None:
                drained = 0
                with anyio.move_on_after(_DRAIN_SECONDS):
                    async for chunk in self._iterator:
                        drained += len(chunk)
                        if drained > _DRAIN_MAX_BYTES:
                            break
        except Exception:  # the connection broke while draining: it will not be reused anyway
            pass
        finally:
            await self._inner.aclose()


class KeepAliveTransport(httpx2.AsyncBaseTransport):
    """`httpx2.AsyncHTTPTransport` whose responses finish reading before they close."""

    def __init__(self, **kwargs: Any) -> None:
        self._inner = httpx2.AsyncHTTPTransport(**kwargs)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        response.stream = _DrainOnClose(response.stream)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
