"""A FastMCP backend that exercises the protocol beyond plain calls, for relaying tests.

``python tests/servers/protocol.py --transport stdio|http --port N`` (http serves ``/mcp``).
Logs go to stderr only.

Tools:
- ``progress(tag, steps=5, delay=0.05)``: one progress notification per step, message ``{tag}:{i}``.
- ``ask_sample(tag)``: sampling/createMessage to the caller; returns the answer's text.
- ``ask_elicit(tag)``: elicitation/create (one string field ``value``); returns the value.
- ``ask_roots()``: roots/list to the caller; returns the root URIs, one per line.
- ``log(tag, level)``: one log message ``{tag}`` at ``level`` (subject to the session's level).
- ``wait_cancel(marker, seconds=30)``: writes ``started`` to the file ``marker``, sleeps, and
  writes ``cancelled`` there when the call is cancelled (``finished`` if it ever completes).
- ``add_tool(name)``: adds a tool ``name`` (returns ``"{name} ok"``) and sends
  ``notifications/tools/list_changed``.
- ``touch(uri)``: ``notifications/resources/updated`` for ``uri`` to every session subscribed to
  it; returns how many were notified.

Resources: ``proto://watched`` (subscribable), the template ``proto://items/{id}``. Prompt
``greet(name)``. Completions: ``greet``'s ``name`` from NAMES, the template's ``id`` from ITEMS,
filtered by the typed prefix.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import anyio
import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools.base import Tool
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.message import ServerMessageMetadata
from serving import add_subscriptions, parser, serve

NAMES = ["alice", "albert", "bob", "carol"]
ITEMS = ["100", "101", "200"]
WATCHED = "proto://watched"


def _text_of(content: Any) -> str:
    if isinstance(content, mcp_types.TextContent):
        return content.text
    if isinstance(content, list):
        return " ".join(_text_of(c) for c in content)
    return str(content)


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


def create_server() -> FastMCP:
    """The protocol backend."""
    mcp = FastMCP(name="protocol", version="1.0.0")
    subscriptions = add_subscriptions(mcp)

    @mcp.tool(description="Reports progress once per step, message '{tag}:{i}'.")
    async def progress(tag: str, ctx: Context, steps: int = 5, delay: float = 0.05) -> str:
        for i in range(1, steps + 1):
            await ctx.report_progress(i, steps, f"{tag}:{i}")
            await anyio.sleep(delay)
        return f"{tag} done"

    @mcp.tool(description="Asks the caller's LLM (sampling) and returns its answer text.")
    async def ask_sample(tag: str, ctx: Context) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            result = await ctx.session.create_message(
                messages=[
                    mcp_types.SamplingMessage(
                        role="user", content=mcp_types.TextContent(type="text", text=tag)
                    )
                ],
                max_tokens=50,
                related_request_id=ctx.request_id,
            )
        return _text_of(result.content)

    @mcp.tool(description="Asks the caller (elicitation) for a value and returns it.")
    async def ask_elicit(tag: str, ctx: Context) -> str:
        answer = await ctx.elicit(f"value for {tag}?", response_type=str)
        if answer.action != "accept":
            raise ToolError(f"elicitation {answer.action}")
        return str(answer.data)  # type: ignore[union-attr]

    @mcp.tool(description="Returns the caller's root URIs, one per line.")
    async def ask_roots(ctx: Context) -> str:
        result = await ctx.session.send_request(
            mcp_types.ListRootsRequest(),
            mcp_types.ListRootsResult,
            metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
        )
        return "\n".join(str(root.uri) for root in result.roots)

    @mcp.tool(description="Sends one log message '{tag}' at 'level'.")
    async def log(tag: str, level: mcp_types.LoggingLevel, ctx: Context) -> str:
        await ctx.log(tag, level=level, logger_name="proto")
        return f"logged {tag} at {level}"

    @mcp.tool(description="Sleeps; records in the file 'marker' whether it was cancelled.")
    async def wait_cancel(marker: str, seconds: float = 30) -> str:
        _write(marker, "started")
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            _write(marker, "cancelled")  # synchronously: nothing can be awaited once cancelled
            raise
        _write(marker, "finished")
        return "finished"

    @mcp.tool(description="Adds a tool 'name' at runtime and announces it (tools/list_changed).")
    async def add_tool(name: str, ctx: Context) -> str:
        async def added() -> str:
            return f"{name} ok"

        mcp.add_tool(Tool.from_function(added, name=name, description=f"added at runtime: {name}"))
        await ctx.send_notification(mcp_types.ToolListChangedNotification())
        return f"added {name}"

    @mcp.tool(description="Sends resources/updated for 'uri' to the sessions subscribed to it.")
    async def touch(uri: str) -> str:
        notified = 0
        for session, uris in list(subscriptions.values()):
            if uri in uris:
                await session.send_resource_updated(uri)
                notified += 1
        return f"notified {notified}"

    @mcp.resource(WATCHED, name="watched", mime_type="text/plain")
    def watched() -> str:
        return "watched content"

    @mcp.resource("proto://items/{id}", name="item", mime_type="text/plain")
    def item(id: str) -> str:
        return f"item {id}"

    @mcp.prompt(description="Greets someone.")
    def greet(name: str) -> str:
        return f"Hello, {name}!"

    @mcp.completion
    def complete(
        ref: mcp_types.PromptReference | mcp_types.ResourceTemplateReference,
        argument: mcp_types.CompletionArgument,
        context: mcp_types.CompletionContext | None,
    ) -> list[str] | None:
        if isinstance(ref, mcp_types.PromptReference) and ref.name == "greet":
            candidates = NAMES if argument.name == "name" else []
        elif (
            isinstance(ref, mcp_types.ResourceTemplateReference) and ref.uri == "proto://items/{id}"
        ):
            candidates = ITEMS if argument.name == "id" else []
        else:
            return None
        return [c for c in candidates if c.startswith(argument.value)]

    return mcp


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__, transports=("stdio", "http")).parse_args(argv)
    server = create_server()
    serve(server, args, app=lambda: server.http_app(path="/mcp"))


if __name__ == "__main__":
    main()
