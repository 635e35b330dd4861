"""Multi-round-trip requests (SEP-2322) for 2026-07-28 clients in front of legacy backends.

A 2026-07-28 client cannot be sent a server-to-client request during a call: it is asked
with an ``InputRequiredResult`` instead, and retries the request with ``inputResponses``
and the ``requestState`` it was given. A backend spoken to in the handshake era does send
sampling, elicitation and roots requests mid-call. `InputRounds` joins the two:

- a modern client's call runs in a task of its own (a *round*), so it can outlive the HTTP
  request that started it;
- when the backend asks something, the request that is waiting on the round answers the
  client with an ``InputRequiredResult`` carrying the backend's request(s) and a
  ``requestState`` naming the round and its step; the backend's request stays pending;
- the client's retry (any replica of the request's own process, any connection) finds the
  round by its state, hands each response to the backend's pending request, and waits for
  the next step: another question or the final result.

``requestState`` is sealed by the SDK's `RequestStateBoundary` (AES-GCM, bound to the method,
the request and the principal, with an expiry; key from ``MCP_STATE_KEY`` or generated per
process), so what arrives here is only ever a value the router minted; the step counter
makes each state single-use (a replayed or stale state gets -32602). A round the client
abandons is cancelled on the backend after ``routing.input_timeout_seconds``. When the backend
asks for something the client did not declare (sampling, elicitation, roots in the request's
``clientCapabilities``), the call is cancelled and the client gets -32021 with
``requiredCapabilities`` (HTTP 400 on the modern transport), never a result the backend
produced without it.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import mcp_types as types
from mcp.shared.exceptions import MCPError

from mcp_router.call_context import FrontCall, current_call

logger = logging.getLogger("mcp_router.rounds")

T = TypeVar("T")

# Rounds kept at once: a client that starts calls and never retries cannot grow this past the
# bound (the oldest round is cancelled first).
MAX_ROUNDS = 10_000
# A backend that asks several things at once (elicitation, sampling and roots in one
# asyncio.gather) sends them back to back: the round waits this long after each question
# for the next one, so the client gets them in one InputRequiredResult.
SETTLE_SECONDS = 0.05


class _Round:
    """One multi-round-trip request in progress: its backend call and pending questions."""

    def __init__(self, rounds: InputRounds, binding: str, call: FrontCall) -> None:
        self.id = secrets.token_urlsafe(12)
        self.step = 0
        self.binding = binding
        self.call = call
        self.task: asyncio.Task[Any] | None = None
        self.pending: dict[str, tuple[Any, asyncio.Future[Any]]] = {}
        self._asked = 0
        self._changed = asyncio.Event()
        self._rounds = rounds
        self._timer: asyncio.TimerHandle | None = None
        # What the backend needed that the client did not declare (-32021), if it came to that.
        self.required: dict[str, Any] | None = None

    @property
    def state(self) -> str:
        return f"{self.id}.{self.step}"

    async def ask(self, request: Any) -> Any:
        """Called (through the `FrontCall`) when the backend asks the client something."""
        self._asked += 1
        key = f"r{self._asked}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[key] = (request, future)
        self._changed.set()
        return await future

    def lacks(self, required: dict[str, Any]) -> None:
        """Called (through the `FrontCall`) when the backend asks for a capability the client
        did not declare: the client's request ends with -32021 instead of a result the
        backend produced without what it needed."""
        self.required = {**(self.required or {}), **required}
        self._changed.set()

    def arm(self, timeout: float) -> None:
        """(Re)start the abandon timer: the client must come back within ``timeout``."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(timeout, self.abandon)

    def abandon(self, why: str = "abandoned by its client") -> None:
        """The client did not come back (or cannot answer): cancel the call on the backend."""
        if self.task is not None and not self.task.done():
            logger.info("input round %s %s: cancelling the call", self.id, why)
            self.task.cancel()
        self._rounds.forget(self)

    async def next_turn(self) -> Any:
        """Wait until the call finishes (its result) or asks something (InputRequiredResult)."""
        assert self.task is not None
        while True:
            if self.required is not None:
                self.abandon("needs a capability its client did not declare")
                raise MCPError(
                    types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                    "the backend needs client capabilities this request did not declare: "
                    + ", ".join(sorted(self.required)),
                    data={"requiredCapabilities": self.required},
                )
            if self.task.done():
                self._rounds.forget(self)
                return self.task.result()
            if self.pending and not await self._wait_change(SETTLE_SECONDS):
                # Quiet for SETTLE_SECONDS: the backend asked all it asks at once.
                self.step += 1
                self.call.parked = True
                return types.InputRequiredResult(
                    input_requests={k: req for k, (req, _f) in self.pending.items()},
                    request_state=self.state,
                )
            if not self.pending:
                await self._wait_change(None)

    async def _wait_change(self, timeout: float | None) -> bool:
        """Wait until the call ends or asks something new; False when ``timeout`` passed."""
        assert self.task is not None
        self._changed.clear()
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            done, _ = await asyncio.wait(
                {self.task, changed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            changed.cancel()
        return bool(done)

    def answer(self, responses: dict[str, Any] | None) -> None:
        """Hand the client's responses to the backend's pending requests."""
        self.call.parked = False
        for key, response in (responses or {}).items():
            entry = self.pending.pop(key, None)
            if entry is not None and not entry[1].done():
                entry[1].set_result(response)


class InputRounds:
    """The multi-round-trip requests in progress in this process."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._rounds: dict[str, _Round] = {}

    def __len__(self) -> int:
        return len(self._rounds)

    def forget(self, round_: _Round) -> None:
        if self._rounds.get(round_.id) is round_:
            del self._rounds[round_.id]
        if round_._timer is not None:
            round_._timer.cancel()

    async def run(
        self,
        call: FrontCall,
        binding: tuple[str, str, Any],
        start: Callable[[], Awaitable[T]],
        state: str | None,
        responses: dict[str, Any] | None,
    ) -> T | types.InputRequiredResult:
        """Start ``start()`` as a new round, or continue the round ``state`` names."""
        key = _binding(binding)
        if state is not None:
            round_ = self._resume(state, key, call)
            round_.answer(responses)
        else:
            round_ = self._start(key, call, start)
        round_.arm(self.timeout)
        try:
            return await round_.next_turn()
        except asyncio.CancelledError:
            # This request was cancelled (the client went away): the round may continue
            # with a retry, or be abandoned by its timer.
            raise

    def _start(self, key: str, call: FrontCall, start: Callable[[], Awaitable[Any]]) -> _Round:
        if len(self._rounds) >= MAX_ROUNDS:
            oldest = next(iter(self._rounds.values()))
            oldest.abandon()
        round_ = _Round(self, key, call)
        call.ask = round_.ask
        call.lacks = round_.lacks
        self._rounds[round_.id] = round_
        context = contextvars.copy_context()
        context.run(current_call.set, call)
        round_.task = asyncio.get_running_loop().create_task(start(), context=context)
        return round_

    def _resume(self, state: str, key: str, call: FrontCall) -> _Round:
        round_id, _, step = state.partition(".")
        round_ = self._rounds.get(round_id)
        if round_ is None or str(round_.step) != step:
            raise MCPError(
                types.INVALID_PARAMS,
                "requestState is unknown, expired or was already used: "
                "send the request again without it",
            )
        if round_.binding != key:
            raise MCPError(types.INVALID_PARAMS, "requestState was issued for a different request")
        # Progress and log messages of the rest of the call go to this request's stream.
        round_.call.session = call.session
        round_.call.request_id = call.request_id
        round_.call.progress_token = call.progress_token
        return round_


def _binding(binding: tuple[str, str, Any]) -> str:
    method, name, arguments = binding
    return json.dumps([method, name, arguments], sort_keys=True, default=str)
