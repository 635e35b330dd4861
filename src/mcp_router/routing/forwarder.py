"""Executes one routed request: candidates in order, breaker permits, retries, failover.

Rules (DESIGN.md "Routing semantics"):
- candidates come from the `RoutingEngine` (tools) or the replica group (resources, prompts);
- a backend whose circuit does not admit the call is skipped;
- a transport failure moves on to the next candidate, unless the request may already have run
  on the backend and repeating it is not known to be harmless;
- a call is retried on the same backend only when it surely did not reach the backend, or the
  tool is annotated idempotent / read-only (resource reads and prompt gets are read-only);
- a backend's own answer (a result with ``isError``, or a JSON-RPC error) is the answer: it
  is never retried nor failed over, and it counts as a success for the breaker;
- a timeout is never retried on the same backend (it already cost a full timeout, and the
  backend is likely stuck); a backend with no session is not retried either (its supervisor
  is reconnecting; the next candidate is the better bet).
One routed call takes at most one breaker permit per backend, so it counts once.

Errors name every backend involved and why it did not answer: a circuit open until when and
after what, a timeout after how long, a connection that failed, or that no backend serves it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import mcp_types as types
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from mcp_router.backends.backend import Backend
from mcp_router.backends.manager import BackendManager, ExposedTool
from mcp_router.call_context import current_call
from mcp_router.errors import (
    AccessDeniedError,
    BackendError,
    BackendOverCapacityError,
    BackendTimeoutError,
    BackendUnavailableError,
    RoutingError,
    UnknownComponentError,
)
from mcp_router.links import expose_prompt_result, expose_read_result, expose_tool_result
from mcp_router.resilience.retry import RetryPolicy
from mcp_router.routing.engine import Candidate, RoutingDecision, RoutingEngine

logger = logging.getLogger("mcp_router.calls")

T = TypeVar("T")


@dataclass
class CallRecord:
    """What happened to one routed request (for logs, metrics and tests)."""

    kind: str
    exposed: str
    backend: str | None = None
    outcome: str = "error"
    attempts: int = 0
    failovers: int = 0
    duration_ms: float = 0.0
    errors: list[str] = field(default_factory=list)
    decision: RoutingDecision | None = None  # the candidates in the order they were planned


CallObserver = Callable[[CallRecord], None]
# (kind, exposed name or URI, arguments) -> None to go on, or why the request is refused.
Admission = Callable[[str, str, dict[str, Any] | None], str | None]


class Forwarder:
    """Routes tool calls, resource reads and prompt gets to backends, with resilience."""

    def __init__(self, manager: BackendManager, engine: RoutingEngine, retry: RetryPolicy) -> None:
        self.manager = manager
        self.engine = engine
        self.retry = retry
        self.observers: list[CallObserver] = []
        self.admission: Admission | None = None  # governance (mcp_router.governance)
        self.last_decisions: dict[str, list[str]] = {}  # exposed name -> backends tried, in order
        # exposed name -> the decision its last call was routed by (kept by reference: O(1))
        self.last_routing: dict[str, RoutingDecision] = {}

    # ------------------------------------------------------------------ decisions

    def tool_decision(
        self, exposed: str, *, preview: bool = False
    ) -> tuple[ExposedTool, RoutingDecision]:
        """The routing decision for an exposed tool name.

        ``preview=True`` (what `router_get_routing_info` uses) leaves the balancing state
        untouched, so the preview is exactly the order the next call will use.
        """
        entry = self.manager.index.tools.get(exposed)
        if entry is None:
            raise UnknownComponentError(f"unknown tool '{exposed}'")
        group = entry.namespace if entry.namespace else ""
        return entry, self.engine.candidates(exposed, entry.original_name, group, peek=preview)

    def group_decision(
        self,
        exposed: str,
        group: str,
        original: str,
        serves: Callable[[Backend], bool] | None = None,
    ) -> RoutingDecision:
        """Candidates for a resource or prompt: the group's members that serve it, ordered
        and breaker-checked by the engine like tool candidates."""
        return self.engine.group_candidates(exposed, original, group, serves)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ requests

    async def call_tool(
        self,
        exposed: str,
        arguments: dict[str, Any] | None,
        *,
        progress_callback: ProgressFnT | None = None,
        meta: dict[str, Any] | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Call an exposed tool on the best available backend."""
        self._admit("tool", exposed, arguments)  # first: a refused call moves no balancer
        # The retry of a backend's round goes to that backend (`_pinned`): it moves no balancer.
        entry, decision = self.tool_decision(exposed, preview=_resuming())
        original = entry.original_name

        async def call(b: Backend) -> types.CallToolResult | types.InputRequiredResult:
            result = await b.call_tool(
                original, arguments, progress_callback=progress_callback, meta=meta
            )
            if isinstance(result, types.InputRequiredResult):
                return result  # a modern backend asks the client: its request, verbatim
            # resource links/embedded resources point at the exposed, readable URIs
            return self._exposed(expose_tool_result, result, b, entry.group, entry.namespace)

        return await self._run("tool", exposed, decision, call, safe_to_retry=entry.safe_to_retry)

    async def read_resource(
        self, exposed_uri: str
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        """Read a resource (listed or a template instance) by its exposed URI."""
        self._admit("resource", exposed_uri, None)
        resolved = self.manager.index.resolve_uri(exposed_uri)
        if resolved is None:
            raise UnknownComponentError(f"unknown resource '{exposed_uri}'")
        original, owners = resolved.original_uri, resolved.owners
        serves = None if owners is None else (lambda b: b.name in owners)
        decision = self.group_decision(exposed_uri, resolved.group, original, serves)
        group, codec = resolved.group, self.manager.index.uri_codec

        async def read(b: Backend) -> types.ReadResourceResult | types.InputRequiredResult:
            result = await b.relayed(lambda s: s.read_resource(original))
            if isinstance(result, types.InputRequiredResult):
                return result
            return expose_read_result(result, codec, exposed_uri, original, group)

        return await self._run("resource", exposed_uri, decision, read, safe_to_retry=True)

    async def get_prompt(
        self, exposed: str, arguments: dict[str, str] | None
    ) -> types.GetPromptResult | types.InputRequiredResult:
        """Render an exposed prompt on its backend."""
        self._admit("prompt", exposed, arguments)
        entry = self.manager.index.prompts.get(exposed)
        if entry is None:
            raise UnknownComponentError(f"unknown prompt '{exposed}'")
        original = entry.original_name
        decision = self.group_decision(
            exposed, entry.group, original, lambda b: original in b.catalog.prompts
        )

        async def get(b: Backend) -> types.GetPromptResult | types.InputRequiredResult:
            result = await b.relayed(lambda s: s.get_prompt(original, arguments))
            if isinstance(result, types.InputRequiredResult):
                return result
            return self._exposed(expose_prompt_result, result, b, entry.group, entry.namespace)

        return await self._run("prompt", exposed, decision, get, safe_to_retry=True)

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: types.CompletionArgument,
        context: types.CompletionContext | None,
    ) -> types.Completion | None:
        """Complete a prompt or template argument on a backend of its group that offers
        completions (None: no backend of the group does)."""
        index = self.manager.index
        if isinstance(ref, types.PromptReference):
            entry = index.prompts.get(ref.name)
            if entry is None:
                raise UnknownComponentError(f"unknown prompt '{ref.name}'")
            exposed, group, original = ref.name, entry.group, entry.original_name
            backend_ref: Any = types.PromptReference(type="ref/prompt", name=original)

            def serves(b: Backend) -> bool:
                return original in b.catalog.prompts and _completes(b)
        else:
            tpl = index.templates.get(ref.uri)
            if tpl is None:
                raise UnknownComponentError(f"unknown resource template '{ref.uri}'")
            exposed, group, original = ref.uri, tpl.group, tpl.original_template
            backend_ref = types.ResourceTemplateReference(type="ref/resource", uri=original)
            serves = _completes
        decision = self.engine.group_candidates(exposed, original, group, serves)  # type: ignore[arg-type]
        decision.candidates = [c for c in decision.candidates if _completes(c.backend)]  # type: ignore[arg-type]
        if not decision.candidates and not decision.skipped:
            return None  # nobody offers completions here: an empty answer, not an error
        args = {"name": argument.name, "value": argument.value}
        ctx_args = context.arguments if context is not None else None
        result = await self._run(
            "completion",
            exposed,
            decision,
            lambda b: b.relayed(lambda s: s.complete(backend_ref, args, ctx_args)),
            safe_to_retry=True,
        )
        return result.completion

    def _exposed(
        self, expose: Callable[..., T], result: T, b: Backend, group: str, namespace: str
    ) -> T:
        """A backend's result with the URIs it hands out in exposed, readable form."""
        index = self.manager.index
        return expose(
            result,
            index.uri_codec,
            index.handed_out,
            backend=b.name,
            group=group,
            namespace=namespace,
        )

    def _admit(self, kind: str, exposed: str, arguments: dict[str, Any] | None) -> None:
        if self.admission is not None:
            refused = self.admission(kind, exposed, arguments)
            if refused is not None:
                raise AccessDeniedError(refused)

    # ------------------------------------------------------------------ the loop

    async def _run(
        self,
        kind: str,
        exposed: str,
        decision: RoutingDecision,
        op: Callable[[Backend], Awaitable[T]],
        *,
        safe_to_retry: bool,
    ) -> T:
        decision = _pinned(decision)
        record = CallRecord(kind, exposed, decision=decision)
        self.last_routing[exposed] = decision
        start = time.perf_counter()
        try:
            return await self._try_candidates(record, decision, op, safe_to_retry)
        finally:
            record.duration_ms = (time.perf_counter() - start) * 1000
            for observe in self.observers:
                observe(record)

    async def _try_candidates(
        self,
        record: CallRecord,
        decision: RoutingDecision,
        op: Callable[[Backend], Awaitable[T]],
        safe_to_retry: bool,
    ) -> T:
        tried: list[str] = []
        if not decision.candidates:
            record.outcome = "no_backend"
            raise RoutingError(_no_backend_message(record, decision))

        def retry_if(exc: BaseException) -> bool:
            if not isinstance(exc, BackendError) or isinstance(
                exc, BackendTimeoutError | BackendUnavailableError | BackendOverCapacityError
            ):
                return False
            return not exc.reached or safe_to_retry

        for position, candidate in enumerate(decision.candidates):
            backend: Backend = candidate.backend  # type: ignore[assignment]
            permit = backend.breaker.acquire()
            if permit is None:
                record.errors.append(str(backend.breaker.open_error()))
                continue
            if position > 0 and tried:
                record.failovers += 1
            tried.append(backend.name)
            record.backend = backend.name

            def on_retry(
                attempt: int, exc: BaseException, wait: float, name: str = backend.name
            ) -> None:
                record.attempts += 1
                logger.info(
                    "%s '%s': retrying on '%s' in %.2fs after: %s",
                    record.kind,
                    record.exposed,
                    name,
                    wait,
                    exc,
                )

            record.attempts += 1
            try:
                result = await self.retry.run(
                    lambda b=backend: op(b), retry_if=retry_if, on_retry=on_retry
                )
            except BackendOverCapacityError as exc:
                permit.release()  # the router's own limit, not the backend's fault
                record.errors.append(str(exc))
                continue
            except BackendError as exc:
                permit.failure(exc.reason)
                record.errors.append(str(exc))
                if exc.reached and not safe_to_retry:
                    # It may have run there: repeating it elsewhere could do it twice.
                    record.outcome = "error"
                    self.last_decisions[record.exposed] = tried
                    raise RoutingError(
                        f"{record.kind} '{record.exposed}' failed: {exc} "
                        "(not retried: the call may have reached the backend and the tool is "
                        "not marked idempotent or read-only)"
                    ) from exc
                continue
            except MCPError:
                permit.success()  # the backend answered (with a JSON-RPC error): it is alive
                record.outcome = "backend_error"
                self.last_decisions[record.exposed] = tried
                raise
            except BaseException:
                permit.release()  # cancelled: no outcome to record
                self.last_decisions[record.exposed] = tried
                raise
            permit.success()
            record.outcome = "success"
            if isinstance(result, types.CallToolResult) and result.is_error:
                record.outcome = "tool_error"
            self.last_decisions[record.exposed] = tried
            return result
        self.last_decisions[record.exposed] = tried
        record.outcome = "error" if tried else "no_backend"
        raise RoutingError(_no_backend_message(record, decision))


def _resuming() -> bool:
    front = current_call.get()
    return front is not None and front.resume is not None


def _pinned(decision: RoutingDecision) -> RoutingDecision:
    """The decision for the retry of a round a modern backend started: that backend only.

    Its ``requestState`` means something to that backend alone (another replica of the group
    may not share its key or its state), so the retry neither balances nor fails over; when
    that backend is not a candidate any more (reloaded away, circuit open) the retry fails
    and the client starts over.
    """
    front = current_call.get()
    resume = front.resume if front is not None else None
    if resume is None:
        return decision

    def keep(candidates: list[Candidate]) -> list[Candidate]:
        return [c for c in candidates if c.backend.name == resume.backend]

    if not keep(decision.candidates) and not keep(decision.skipped):
        raise RoutingError(
            f"'{decision.exposed_name}': the backend that asked for input ('{resume.backend}') "
            "no longer serves it; send the request again without requestState"
        )
    return RoutingDecision(
        decision.exposed_name,
        decision.original_name,
        candidates=keep(decision.candidates),
        skipped=keep(decision.skipped),
    )


def _completes(backend: Backend) -> bool:
    caps = backend.capabilities
    return caps is not None and caps.completions is not None


def _no_backend_message(record: CallRecord, decision: RoutingDecision) -> str:
    parts: list[str] = list(record.errors)
    for skipped in decision.skipped:
        breaker = getattr(skipped.backend, "breaker", None)
        if breaker is not None and not breaker.allow():
            # The breaker's own account: open since how many failures, until when, last error.
            parts.append(str(breaker.open_error()))
        else:
            parts.append(f"backend '{skipped.backend.name}': {skipped.reason}")
    if not parts:
        return f"no backend serves {record.kind} '{record.exposed}'"
    return f"no healthy backend for {record.kind} '{record.exposed}': " + " | ".join(parts)
