"""The ``requestState`` of a round a modern backend started, as the router hands it out.

A backend that speaks 2026-07-28 answers a request with its own ``InputRequiredResult``
(backends/eras.py); it goes to the client as the backend sent it, but for its
``requestState``, which the router replaces with a plaintext of its own naming the backend
and carrying the backend's state verbatim:

    mcp-router/backend:["<backend name>", "<the backend's requestState, or null>"]

The front's `RequestStateBoundary` then seals that plaintext (AES-GCM, bound to the method,
name and arguments, with an expiry; key from ``MCP_STATE_KEY``), so a client can neither
read nor alter it, and only what the router minted ever arrives here. On the retry the
router unwraps it: the request is routed to that backend alone (`Forwarder`, `_pinned`) with
the backend's own state and the client's ``inputResponses``; the backend checks its state
as it would directly. Every other state is the router's own round (gateway/rounds.py),
whose states (``<round id>.<step>``, URL-safe characters only) never start with the prefix.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import mcp_types as types
from mcp.shared.exceptions import MCPError

from mcp_router.call_context import FrontCall, Resume

T = TypeVar("T")

PREFIX = "mcp-router/backend:"


def resume(call: FrontCall, state: str | None, responses: Any) -> tuple[str | None, Any]:
    """Note on ``call`` the backend round a retry continues, if ``state`` names one.

    Returns what is left for the router's own rounds: ``(state, responses)`` unchanged, or
    ``(None, None)`` when the retry belongs to a backend's round.
    """
    if state is None or not state.startswith(PREFIX):
        return state, responses
    try:
        backend, inner = json.loads(state[len(PREFIX) :])
    except (ValueError, TypeError) as exc:  # only the router mints these: a bug, not a client
        raise MCPError(types.INVALID_PARAMS, "requestState is malformed") from exc
    call.resume = Resume(str(backend), inner, responses)
    return None, None


def hand_out(call: FrontCall | None, result: T) -> T:
    """A modern backend's ``InputRequiredResult`` with the state that finds it again."""
    if (
        call is None
        or call.input_required_from is None
        or not isinstance(result, types.InputRequiredResult)
    ):
        return result
    state = PREFIX + json.dumps([call.input_required_from, result.request_state])
    return result.model_copy(update={"request_state": state})  # type: ignore[return-value]
