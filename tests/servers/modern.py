"""A FastMCP backend that asks its client for input in either protocol era.

``python tests/servers/modern.py --transport stdio|http|sse --port N --name NAME``.

On a 2026-07-28 request a tool asks with FastMCP's multi-round-trip API: it returns an
``InputRequiredResult`` (with a ``requestState`` of its own) and reads ``ctx.input_responses``
and ``ctx.request_state`` on the retry. On a handshake-era connection the same tool sends the
server-to-client request instead. Every answer says what the server saw, so a test can tell
which era reached it: ``server=NAME era=VERSION client=NAME state=STATE answer=...``.

Tools: ``ask_color`` (elicitation), ``ask_llm(prompt)`` (sampling), ``ask_roots`` (roots),
``whoami`` (the request envelope as JSON: era, client name, declared capabilities, log level;
logs ``whoami`` at info). Prompt ``ask_prompt`` (elicitation), resource ``modern://asked``
(elicitation).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import mcp_types as types
from fastmcp import Context, FastMCP
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from serving import parser, serve

_COLOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"color": {"type": "string"}},
    "required": ["color"],
}


def _era(ctx: Context) -> str | None:
    rc = ctx.request_context
    return rc.protocol_version if rc is not None else None


def _modern(ctx: Context) -> bool:
    return _era(ctx) in MODERN_PROTOCOL_VERSIONS


def _meta(ctx: Context) -> dict[str, Any]:
    rc = ctx.request_context
    return dict(rc.meta or {}) if rc is not None else {}


def _client(ctx: Context) -> str | None:
    if _modern(ctx):
        return (_meta(ctx).get(types.CLIENT_INFO_META_KEY) or {}).get("name")
    params = ctx.session.client_params
    return params.client_info.name if params is not None else None


def _response(ctx: Context, key: str) -> Any:
    return (ctx.input_responses or {}).get(key)


def _elicit_request() -> types.ElicitRequest:
    return types.ElicitRequest(
        params=types.ElicitRequestFormParams(message="Your color?", requested_schema=_COLOR_SCHEMA)
    )


def _sample_request(prompt: str) -> types.CreateMessageRequest:
    return types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[
                types.SamplingMessage(
                    role="user", content=types.TextContent(type="text", text=prompt)
                )
            ],
            max_tokens=20,
        )
    )


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(_text(c) for c in content)
    return getattr(content, "text", str(content))


def create_server(name: str) -> FastMCP:
    """The backend; ``name`` is reported in every answer (to tell replicas apart)."""
    mcp = FastMCP(name=name, version="1.0.0")

    def report(ctx: Context, answer: str) -> str:
        state = ctx.request_state if _modern(ctx) else None
        return f"server={name} era={_era(ctx)} client={_client(ctx)} state={state} answer={answer}"

    async def color(ctx: Context) -> str | types.InputRequiredResult:
        if _modern(ctx):
            answer = _response(ctx, "color")
            if answer is None:
                return types.InputRequiredResult(
                    input_requests={"color": _elicit_request()}, request_state=f"{name}-asked-color"
                )
            return report(ctx, str((answer.content or {}).get("color")))
        result = await ctx.session.elicit(
            message="Your color?", requested_schema=_COLOR_SCHEMA, related_request_id=ctx.request_id
        )
        return report(ctx, str((result.content or {}).get("color")))

    @mcp.tool(description="Asks the client for a color (elicitation).")
    async def ask_color(ctx: Context) -> Any:
        return await color(ctx)

    @mcp.tool(description="Asks the client's LLM (sampling).")
    async def ask_llm(prompt: str, ctx: Context) -> Any:
        if _modern(ctx):
            answer = _response(ctx, "llm")
            if answer is None:
                return types.InputRequiredResult(
                    input_requests={"llm": _sample_request(prompt)},
                    request_state=f"{name}-asked-llm",
                )
            return report(ctx, _text(answer.content))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            result = await ctx.session.create_message(
                messages=_sample_request(prompt).params.messages,
                max_tokens=20,
                related_request_id=ctx.request_id,
            )
        return report(ctx, _text(result.content))

    @mcp.tool(description="Asks the client for its roots.")
    async def ask_roots(ctx: Context) -> Any:
        if _modern(ctx):
            answer = _response(ctx, "roots")
            if answer is None:
                return types.InputRequiredResult(
                    input_requests={"roots": types.ListRootsRequest()},
                    request_state=f"{name}-asked-roots",
                )
            return report(ctx, ",".join(str(r.uri) for r in answer.roots))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            result = await ctx.session.list_roots()
        return report(ctx, ",".join(str(r.uri) for r in result.roots))

    @mcp.tool(description="The request's envelope as the server saw it (JSON).")
    async def whoami(ctx: Context) -> str:
        await ctx.info("whoami")
        meta = _meta(ctx)
        if _modern(ctx):
            declared = meta.get(types.CLIENT_CAPABILITIES_META_KEY) or {}
        else:
            params = ctx.session.client_params
            declared = params.capabilities.model_dump(exclude_none=True) if params else {}
        return json.dumps(
            {
                "server": name,
                "era": _era(ctx),
                "client": _client(ctx),
                "capabilities": sorted(declared),
                "log_level": meta.get(types.LOG_LEVEL_META_KEY),
            }
        )

    @mcp.prompt(description="Asks the client for a color, then renders it.")
    async def ask_prompt(ctx: Context) -> Any:
        answer = await color(ctx)
        if isinstance(answer, types.InputRequiredResult):
            return answer
        return f"prompt {answer}"

    @mcp.resource("modern://asked", name="asked", mime_type="text/plain")
    async def asked(ctx: Context) -> Any:
        answer = await color(ctx)
        if isinstance(answer, types.InputRequiredResult):
            return answer
        return f"resource {answer}"

    return mcp


if __name__ == "__main__":
    args = parser(__doc__, name="modern").parse_args()
    serve(create_server(args.name), args)
