"""ASGI request bodies: read one whole, and hand it on again to the app that serves it.

Several layers read a POST's body before the app does (the body limit, the replica set's
session front) and then call the app with a ``receive`` that replays it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
