"""Small ASGI pieces shared by the layers in front of the MCP app.

- request bodies: several layers read a POST's body before the app does (the body limit, the
  replica set's session front) and then call the app with a ``receive`` that replays it;
- a request header by name;
- a JSON-RPC error answered before the request reached the MCP app (no request id).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

Receive = Callable[[], Awaitable[dict[str, Any]]]


async def read_body(receive: Receive) -> bytes:
    """The whole body of a request (what arrived, if the client went away first)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay_body(body: bytes, then: Receive | None = None) -> Receive:
    """A ``receive`` that gives ``body`` as one message, then defers to ``then``: the real
    connection's stream, which says ``http.disconnect`` when the client goes. A request made
    up here has no connection (``then`` None): it waits until the response is done, since an
    SSE response listens for a disconnect and an answer at once would make it spin."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if then is not None:
            return await then()
        await anyio.sleep_forever()
        return {"type": "http.disconnect"}

    return receive


def header(scope: dict[str, Any], name: bytes) -> bytes | None:
    """The first value of request header ``name`` (lower case, as ASGI gives names)."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def jsonrpc_error_body(message: str, code: int = -32000) -> bytes:
    """A JSON-RPC error with no request id (the request was refused before it was read)."""
    return json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    ).encode()


async def send_jsonrpc_error(
    send: Any,
    status: int,
    message: str,
    code: int = -32000,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer ``status`` with `jsonrpc_error_body` (plus ``headers``)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": jsonrpc_error_body(message, code)})
