"""A FastMCP backend for the 2026-07-28 server scenarios of @modelcontextprotocol/conformance
0.2.0-alpha.12 (``conformance list --server --requirements 2026-07-28``).

``python tests/servers/conformance2026.py --transport stdio|http|sse --port N`` (http serves
``/mcp``, sse ``/sse``; SSE always negotiates 2025-11-25, which makes it a legacy-only backend).

It is the 0.1.16 backend (``conformance.py``: tools, resources, prompts, completion,
subscriptions, caching hints) plus the fixtures of the 2026-07-28 scenarios:

- ``test_missing_capability`` needs sampling: -32021 with ``requiredCapabilities`` when the
  client did not declare it (server-stateless);
- the multi-round-trip fixtures (SEP-2322) ``test_input_required_result_elicitation``,
  ``..._sampling``, ``..._list_roots``, ``..._request_state``, ``..._multiple_inputs``,
  ``..._multi_round``, ``..._tampered_state``, ``..._capabilities`` and the prompt
  ``test_input_required_result_prompt``;
- ``subscriptions/listen`` and the list-changing hooks ``test_trigger_tool_change`` /
  ``test_trigger_prompt_change`` (server-stateless's subscription checks).

Each multi-round-trip fixture is written once for both eras (`_ask`): on a 2026-07-28
connection it returns an ``InputRequiredResult`` and reads ``ctx.input_responses`` /
``ctx.request_state`` on the retry; on a handshake-era connection (the router's backend
session, SSE) it sends the same questions as server-to-client requests, all at once.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.server.event_store import EventStore
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from serving import add_subscriptions, parser, serve

from conformance import add_prompts, add_resources, add_tools

Questions = dict[str, Any]
"""Input key -> the request (ElicitRequest, CreateMessageRequest, ListRootsRequest)."""


def _elicit(message: str, field: str, kind: str = "string") -> mcp_types.ElicitRequest:
    return mcp_types.ElicitRequest(
        params=mcp_types.ElicitRequestFormParams(
            message=message,
            requested_schema={
                "type": "object",
                "properties": {field: {"type": kind}},
                "required": [field],
            },
        )
    )


def _sample(text: str, max_tokens: int) -> mcp_types.CreateMessageRequest:
    return mcp_types.CreateMessageRequest(
        params=mcp_types.CreateMessageRequestParams(
            messages=[
                mcp_types.SamplingMessage(
                    role="user", content=mcp_types.TextContent(type="text", text=text)
                )
            ],
            max_tokens=max_tokens,
        )
    )


ROOTS = mcp_types.ListRootsRequest()

_CAPABILITY = {
    "elicitation/create": mcp_types.ClientCapabilities(
        elicitation=mcp_types.ElicitationCapability()
    ),
    "sampling/createMessage": mcp_types.ClientCapabilities(sampling=mcp_types.SamplingCapability()),
    "roots/list": mcp_types.ClientCapabilities(roots=mcp_types.RootsCapability()),
}
_RESULT = {
    "elicitation/create": mcp_types.ElicitResult,
    "sampling/createMessage": mcp_types.CreateMessageResult,
    "roots/list": mcp_types.ListRootsResult,
}


def _modern(ctx: Context) -> bool:
    return ctx.session.protocol_version in MODERN_PROTOCOL_VERSIONS


def _responses(ctx: Context, questions: Questions) -> dict[str, Any] | None:
    """The client's valid answers to every question, or None (ask again)."""
    given = ctx.input_responses
    if given is None:
        return None
    answers: dict[str, Any] = {}
    for key, request in questions.items():
        raw = given.get(key)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            data = raw.model_dump(by_alias=True, exclude_none=True)
        else:
            data = raw
        try:
            answers[key] = _RESULT[request.method].model_validate(data, by_name=False)
        except ValueError as exc:
            raise MCPError(
                mcp_types.INVALID_PARAMS, f"inputResponses[{key!r}] is not a valid answer: {exc}"
            ) from exc
    return answers


async def _ask(
    ctx: Context, questions: Questions, *, state: str | None = None
) -> dict[str, Any] | mcp_types.InputRequiredResult:
    """The answers to ``questions`` (both eras), or the ``InputRequiredResult`` to return."""
    if _modern(ctx):
        answers = _responses(ctx, questions)
        if answers is not None:
            return answers
        return mcp_types.InputRequiredResult(input_requests=questions, request_state=state)
    with warnings.catch_warnings():
        # Sampling and roots are deprecated from 2026-07-28 on; this is the handshake era.
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
        results = await asyncio.gather(
            *(
                ctx.session.send_request(request, _RESULT[request.method], metadata=metadata)
                for request in questions.values()
            )
        )
    return dict(zip(questions, results, strict=True))


def _text(result: Any) -> str:
    content = getattr(result, "content", None)
    if isinstance(content, mcp_types.TextContent):
        return content.text
    if isinstance(content, dict) and len(content) == 1:
        return str(next(iter(content.values())))  # the one field asked for
    return str(content)


def add_input_required(mcp: FastMCP) -> None:
    """The multi-round-trip fixtures of the input-required-result-* scenarios."""

    @mcp.tool(description="Asks for the user's name (elicitation), then greets them.")
    async def test_input_required_result_elicitation(
        ctx: Context,
    ) -> str | mcp_types.InputRequiredResult:
        answers = await _ask(ctx, {"user_name": _elicit("What is your name?", "name")})
        if isinstance(answers, mcp_types.InputRequiredResult):
            return answers
        return f"Hello, {_text(answers['user_name'])}!"

    @mcp.tool(description="Asks the client's LLM for the capital of France.")
    async def test_input_required_result_sampling(
        ctx: Context,
    ) -> str | mcp_types.InputRequiredResult:
        answers = await _ask(
            ctx, {"capital_question": _sample("What is the capital of France?", 100)}
        )
        if isinstance(answers, mcp_types.InputRequiredResult):
            return answers
        return f"LLM response: {_text(answers['capital_question'])}"

    @mcp.tool(description="Asks for the client's roots and names them.")
    async def test_input_required_result_list_roots(
        ctx: Context,
    ) -> str | mcp_types.InputRequiredResult:
        answers = await _ask(ctx, {"client_roots": ROOTS})
        if isinstance(answers, mcp_types.InputRequiredResult):
            return answers
        roots = answers["client_roots"].roots
        return "Roots: " + ", ".join(str(r.uri) for r in roots)

    @mcp.tool(description="Asks for a confirmation and checks the state it handed out.")
    async def test_input_required_result_request_state(
        ctx: Context,
    ) -> str | mcp_types.InputRequiredResult:
        answers = await _ask(
            ctx, {"confirm": _elicit("Please confirm", "ok", "boolean")}, state="confirm-1"
        )
        if isinstance(answers, mcp_types.InputRequiredResult):
            return answers
        if _modern(ctx) and ctx.request_state != "confirm-1":
            raise MCPError(mcp_types.INVALID_PARAMS, "requestState was not echoed")
        return "state-ok: confirmed"

    @mcp.tool(description="Asks three things at once: a name, a greeting (LLM) and the roots.")
    async def test_input_required_result_multiple_inputs(
        ctx: Context,
    ) -> str | mcp_types.InputRequiredResult:
        answers = await _ask(
            ctx,
            {
                "user_name": _elicit("What is your name?", "name"),
                "greeting": _sample("Generate a greeting", 50),
                "client_roots": ROOTS,
            },
            state="multiple-1",
        )
        if isinstance(answers, mcp_types.InputRequiredResult):
            return answers
        return (
            f"{_text(answers['greeting'])} {_text(answers['user_name'])}, "
            f"{len(answers['client_roots'].roots)} root(s)"
        )

    @mcp.tool(description="Asks a name, then a colour (two rounds), then answers.")
    async def test_input_required_result_multi_round(
        ctx: Context,
    ) -> str | mcp_types.InputRequiredResult:
        step1 = {"step1": _elicit("Step 1: What is your name?", "name")}
        step2 = {"step2": _elicit("Step 2: What is your favorite color?", "color")}
        if not _modern(ctx):
            first = await _ask(ctx, step1)
            second = await _ask(ctx, step2)
            assert not isinstance(first, mcp_types.InputRequiredResult)
            assert not isinstance(second, mcp_types.InputRequiredResult)
            return f"{_text(first['step1'])} likes {_text(second['step2'])}"
        if ctx.request_state == "round-2":
            answers = _responses(ctx, step2)
            if answers is None:
                return mcp_types.InputRequiredResult(input_requests=step2, request_state="round-2")
            return f"Your favorite color is {_text(answers['step2'])}"
        answers = _responses(ctx, step1)
        if answers is None:
            return mcp_types.InputRequiredResult(input_requests=step1, request_state="round-1")
        return mcp_types.InputRequiredResult(input_requests=step2, request_state="round-2")

    @mcp.tool(description="Asks for a confirmation with integrity-protected state.")
    async def test_input_required_result_tampered_state(
        ctx: Context,
    ) -> str | mcp_types.InputRequiredResult:
        # The SDK's RequestStateBoundary seals requestState; a tampered one never gets here.
        answers = await _ask(
            ctx, {"confirm": _elicit("Please confirm", "ok", "boolean")}, state="sealed"
        )
        if isinstance(answers, mcp_types.InputRequiredResult):
            return answers
        return "confirmed"

    @mcp.tool(description="Asks only for what the client declared (sampling, elicitation).")
    async def test_input_required_result_capabilities(
        ctx: Context,
    ) -> str | mcp_types.InputRequiredResult:
        wanted = {
            "capital_question": _sample("What is the capital of France?", 100),
            "user_name": _elicit("What is your name?", "name"),
        }
        questions = {
            key: request
            for key, request in wanted.items()
            if ctx.session.check_client_capability(_CAPABILITY[request.method])
        }
        if not questions:
            return "nothing to ask: the client declared neither sampling nor elicitation"
        answers = await _ask(ctx, questions)
        if isinstance(answers, mcp_types.InputRequiredResult):
            return answers
        return "answered: " + ", ".join(sorted(answers))

    @mcp.prompt(description="A prompt that asks the user for its context first.")
    async def test_input_required_result_prompt(
        ctx: Context,
    ) -> str | mcp_types.InputRequiredResult:
        answers = await _ask(
            ctx, {"user_context": _elicit("What context should the prompt use?", "context")}
        )
        if isinstance(answers, mcp_types.InputRequiredResult):
            return answers
        return f"Use this context: {_text(answers['user_context'])}"


def add_capability_checks(mcp: FastMCP) -> None:
    """``test_missing_capability``: the server-stateless probe for -32021."""

    @mcp.tool(description="Needs the sampling capability; fails with -32021 without it.")
    async def test_missing_capability(ctx: Context) -> str:
        if not ctx.session.check_client_capability(_CAPABILITY["sampling/createMessage"]):
            raise MCPError(
                mcp_types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                "this tool needs the sampling capability, which the client did not declare",
                data={"requiredCapabilities": {"sampling": {}}},
            )
        return "the client declared sampling"


def add_list_changes(mcp: FastMCP) -> None:
    """``subscriptions/listen`` (so ``server/discover`` advertises listChanged) and the hooks
    ``test_trigger_tool_change`` / ``test_trigger_prompt_change`` that change the lists: they
    add or remove ``test_dynamic_tool`` / ``test_dynamic_prompt`` and tell listen streams
    (2026-07-28) and the calling session (handshake era, e.g. the router's backend session)."""
    bus = InMemorySubscriptionBus()
    mcp._mcp_server.add_request_handler(
        "subscriptions/listen", mcp_types.SubscriptionsListenRequestParams, ListenHandler(bus)
    )

    def dynamic_tool() -> str:
        return "added by test_trigger_tool_change"

    def dynamic_prompt() -> str:
        return "added by test_trigger_prompt_change"

    @mcp.tool(description="Adds or removes test_dynamic_tool (the tool list changes).")
    async def test_trigger_tool_change(ctx: Context) -> str:
        if "test_dynamic_tool" in {t.name for t in await mcp.list_tools()}:
            mcp.local_provider.remove_tool("test_dynamic_tool")
        else:
            mcp.tool(name="test_dynamic_tool", description="A tool that comes and goes.")(
                dynamic_tool
            )
        await bus.publish(ToolsListChanged())
        if not _modern(ctx):
            await ctx.send_notification(mcp_types.ToolListChangedNotification())
        return "tool list changed"

    @mcp.tool(description="Adds or removes test_dynamic_prompt (the prompt list changes).")
    async def test_trigger_prompt_change(ctx: Context) -> str:
        if "test_dynamic_prompt" in {p.name for p in await mcp.list_prompts()}:
            mcp.local_provider.remove_prompt("test_dynamic_prompt")
        else:
            mcp.prompt(name="test_dynamic_prompt", description="A prompt that comes and goes.")(
                dynamic_prompt
            )
        await bus.publish(PromptsListChanged())
        if not _modern(ctx):
            await ctx.send_notification(mcp_types.PromptListChangedNotification())
        return "prompt list changed"


def create_server() -> FastMCP:
    """The 2026-07-28 conformance backend."""
    mcp = FastMCP(name="conformance2026", version="1.0.0", dereference_schemas=False)
    add_tools(mcp)
    add_resources(mcp)
    add_prompts(mcp)
    add_subscriptions(mcp)
    add_input_required(mcp)
    add_capability_checks(mcp)
    add_list_changes(mcp)
    return mcp


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__).parse_args(argv)
    server = create_server()
    serve(
        server,
        args,
        app=(
            (
                lambda: server.http_app(
                    path="/mcp",
                    event_store=EventStore(),
                    retry_interval=500,
                    host_origin_protection=True,
                )
            )
            if args.transport == "http"
            else None
        ),
    )


if __name__ == "__main__":
    main()
