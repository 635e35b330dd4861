"""RFC 9110: surrounding whitespace is not part of a header value. ``Mcp-Name`` with spaces
around the tool name is the same request (the SDK compares it with the body)."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from mcp_router.gateway.headers import TrimmedHeaders

pytestmark = pytest.mark.timeout(30)


async def test_mcp_headers_reach_the_app_without_surrounding_whitespace() -> None:
    seen: dict[bytes, bytes] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(dict(scope["headers"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx2.ASGITransport(app=TrimmedHeaders(app))
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.post(
            "/mcp",
            headers={"Mcp-Name": "  echo\t ", "Mcp-Method": "tools/call ", "X-Other": " keep "},
        )
    assert response.status_code == 204
    assert seen[b"mcp-name"] == b"echo"
    assert seen[b"mcp-method"] == b"tools/call"
    assert seen[b"x-other"] == b" keep "  # only the MCP headers are normalised here
