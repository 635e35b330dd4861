"""A FastMCP backend implementing the server scenarios of @modelcontextprotocol/conformance 0.1.16.

``python tests/servers/conformance.py --transport stdio|http --port N`` (http serves ``/mcp``).
Logs go to stderr only.

Every name below is the exact one a conformance scenario calls (``conformance list --server``):
tools ``test_simple_text`` ... ``test_reconnection`` and ``json_schema_2020_12_tool``, resources
``test://static-text``, ``test://static-binary``, ``test://watched-resource``, the template
``test://template/{id}/data``, prompts ``test_simple_prompt`` ... ``test_prompt_with_image``,
completion for ``test_prompt_with_arguments``, ``resources/subscribe`` / ``unsubscribe``, and,
over HTTP, Host/Origin validation (DNS rebinding) plus an event store so that
``test_reconnection`` can close its SSE stream mid-call and resume it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import warnings
from typing import Any

import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.prompts import Message
from fastmcp.server.event_store import EventStore
from fastmcp.tools.base import Tool, ToolResult
from mcp.shared.exceptions import MCPDeprecationWarning
from serving import add_subscriptions, parser, serve

# A 1x1 red PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108020000009077"
    "53de0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082"
)
PNG_B64 = base64.b64encode(PNG).decode()


def _wav(samples: int = 8) -> bytes:
    """A tiny silent 8 kHz mono 8-bit PCM WAV file."""
    data = b"\x80" * samples
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 8)
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


WAV_B64 = base64.b64encode(_wav()).decode()

JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}

ELICITATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}

SEP1034_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}

SEP1330_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}

COMPLETIONS: dict[str, list[str]] = {
    "arg1": ["paris", "park", "party", "test", "testing"],
    "arg2": ["world", "wonder", "wide"],
    "id": ["123", "456", "789"],
}


class RawSchemaTool(Tool):
    """A no-op tool whose input schema is served verbatim (JSON Schema 2020-12 keywords kept)."""

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(content=f"received: {json.dumps(arguments, sort_keys=True)}")


def _text(value: str) -> mcp_types.TextContent:
    return mcp_types.TextContent(type="text", text=value)


def _require_capability(ctx: Context, capability: mcp_types.ClientCapabilities, what: str) -> None:
    if not ctx.session.check_client_capability(capability):
        raise ToolError(f"the client does not support {what}")


async def _elicit(ctx: Context, message: str, schema: dict[str, Any]) -> mcp_types.ElicitResult:
    _require_capability(
        ctx,
        mcp_types.ClientCapabilities(elicitation=mcp_types.ElicitationCapability()),
        "elicitation",
    )
    return await ctx.session.elicit(
        message=message, requested_schema=schema, related_request_id=ctx.request_id
    )


def add_tools(mcp: FastMCP) -> None:
    """The tools of the tools-* and elicitation-* scenarios."""

    @mcp.tool(description="Returns a simple text response.")
    def test_simple_text() -> str:
        return "This is a simple text response for testing."

    @mcp.tool(description="Returns a 1x1 PNG image.")
    def test_image_content() -> ToolResult:
        return ToolResult(
            content=[mcp_types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")]
        )

    @mcp.tool(description="Returns a short WAV clip.")
    def test_audio_content() -> ToolResult:
        return ToolResult(
            content=[mcp_types.AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")]
        )

    @mcp.tool(description="Returns an embedded text resource.")
    def test_embedded_resource() -> ToolResult:
        return ToolResult(
            content=[
                mcp_types.EmbeddedResource(
                    type="resource",
                    resource=mcp_types.TextResourceContents(
                        uri="test://embedded-resource",
                        mime_type="text/plain",
                        text="This is an embedded resource content.",
                    ),
                )
            ]
        )

    @mcp.tool(description="Returns text, an image and an embedded resource.")
    def test_multiple_content_types() -> ToolResult:
        return ToolResult(
            content=[
                _text("Multiple content types test:"),
                mcp_types.ImageContent(type="image", data=PNG_B64, mime_type="image/png"),
                mcp_types.EmbeddedResource(
                    type="resource",
                    resource=mcp_types.TextResourceContents(
                        uri="test://mixed-content-resource",
                        mime_type="application/json",
                        text=json.dumps({"test": "data", "value": 123}),
                    ),
                ),
            ]
        )

    @mcp.tool(description="Sends three info log notifications while it runs.")
    async def test_tool_with_logging(ctx: Context) -> str:
        await ctx.info("Tool execution started")
        await asyncio.sleep(0.05)
        await ctx.info("Tool processing data")
        await asyncio.sleep(0.05)
        await ctx.info("Tool execution completed")
        return "Tool with logging executed successfully"

    @mcp.tool(description="Always fails with a tool error.")
    def test_error_handling() -> str:
        raise ToolError("This tool intentionally returns an error for testing")

    @mcp.tool(description="Reports progress 0, 50 and 100 out of 100.")
    async def test_tool_with_progress(ctx: Context) -> str:
        await ctx.report_progress(0, 100)
        await asyncio.sleep(0.05)
        await ctx.report_progress(50, 100)
        await asyncio.sleep(0.05)
        await ctx.report_progress(100, 100)
        return "Tool with progress executed successfully"

    @mcp.tool(description="Asks the client's LLM (sampling/createMessage) to answer a prompt.")
    async def test_sampling(prompt: str, ctx: Context) -> str:
        _require_capability(
            ctx,
            mcp_types.ClientCapabilities(sampling=mcp_types.SamplingCapability()),
            "sampling",
        )
        # Sampling is deprecated from 2026-07-28 on; the scenario tests the handshake era.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            result = await ctx.session.create_message(
                messages=[mcp_types.SamplingMessage(role="user", content=_text(prompt))],
                max_tokens=100,
                related_request_id=ctx.request_id,
            )
        content = result.content
        text = content.text if isinstance(content, mcp_types.TextContent) else str(content)
        return f"LLM response: {text}"

    @mcp.tool(description="Asks the user (elicitation/create) for a username and an email.")
    async def test_elicitation(message: str, ctx: Context) -> str:
        result = await _elicit(ctx, message, ELICITATION_SCHEMA)
        return f"User response: action={result.action}, content={json.dumps(result.content)}"

    @mcp.tool(description="Elicitation with default values for every primitive type (SEP-1034).")
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        result = await _elicit(ctx, "Please review your information", SEP1034_SCHEMA)
        return (
            f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"
        )

    @mcp.tool(description="Elicitation with the five enum schema variants (SEP-1330).")
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        result = await _elicit(ctx, "Please choose your options", SEP1330_SCHEMA)
        return (
            f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"
        )

    @mcp.tool(description="Closes its SSE stream mid-call; the result arrives after resumption.")
    async def test_reconnection(ctx: Context) -> str:
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)
        return "Reconnection test completed successfully"

    mcp.add_tool(
        RawSchemaTool(
            name="json_schema_2020_12_tool",
            description="Tool with JSON Schema 2020-12 features",
            parameters=JSON_SCHEMA_2020_12,
        )
    )


def add_resources(mcp: FastMCP) -> None:
    """The resources of the resources-* scenarios."""

    @mcp.resource(
        "test://static-text",
        name="static-text",
        mime_type="text/plain",
        description="A static text resource.",
    )
    def static_text() -> str:
        return "This is the content of the static text resource."

    @mcp.resource(
        "test://static-binary",
        name="static-binary",
        mime_type="image/png",
        description="A static binary resource (PNG).",
    )
    def static_binary() -> bytes:
        return PNG

    @mcp.resource(
        "test://watched-resource",
        name="watched-resource",
        mime_type="text/plain",
        description="A resource clients may subscribe to.",
    )
    def watched() -> str:
        return "Watched resource content."

    @mcp.resource(
        "test://template/{id}/data",
        name="template-data",
        mime_type="application/json",
        description="Data for one id.",
    )
    def template_data(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


def add_prompts(mcp: FastMCP) -> None:
    """The prompts of the prompts-* scenarios, and completion for their arguments."""

    @mcp.prompt(description="A simple prompt without arguments.")
    def test_simple_prompt() -> str:
        return "This is a simple prompt for testing."

    @mcp.prompt(description="A prompt with two required arguments.")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @mcp.prompt(description="A prompt that embeds a resource.")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
        return [
            Message(
                mcp_types.EmbeddedResource(
                    type="resource",
                    resource=mcp_types.TextResourceContents(
                        uri=resourceUri,
                        mime_type="text/plain",
                        text="Embedded resource content for testing.",
                    ),
                )
            ),
            Message("Please process the embedded resource above."),
        ]

    @mcp.prompt(description="A prompt that carries an image.")
    def test_prompt_with_image() -> list[Message]:
        return [
            Message(mcp_types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")),
            Message("Please analyze the image above."),
        ]

    @mcp.completion
    def complete(
        ref: mcp_types.PromptReference | mcp_types.ResourceTemplateReference,
        argument: mcp_types.CompletionArgument,
        context: mcp_types.CompletionContext | None,
    ) -> list[str]:
        candidates = COMPLETIONS.get(argument.name, [])
        return [c for c in candidates if c.startswith(argument.value)] or candidates


def create_server() -> FastMCP:
    """The conformance backend."""
    mcp = FastMCP(name="conformance", version="1.0.0", dereference_schemas=False)
    add_tools(mcp)
    add_resources(mcp)
    add_prompts(mcp)
    add_subscriptions(mcp)
    return mcp


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__, transports=("stdio", "http")).parse_args(argv)
    server = create_server()
    serve(
        server,
        args,
        app=lambda: server.http_app(
            path="/mcp",
            event_store=EventStore(),
            retry_interval=500,
            host_origin_protection=True,
        ),
    )


if __name__ == "__main__":
    main()
