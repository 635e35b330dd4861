"""A FastMCP test backend that exercises pass-through fidelity.

``python tests/servers/basic.py --transport stdio|http|sse --port N --name NAME``
(http serves ``/mcp``, sse serves ``/sse``). Logs go to stderr only.

It has a tool with a raw JSON schema (``$schema``, ``$defs`` + ``$ref``,
``additionalProperties: false``, enums, nested objects), a tool with an output schema and
structured content, one with annotations and ``_meta`` (also on its result), one that
returns a tool error, one that returns image + text, ``whoami`` (returns ``--name``),
text and blob resources, a resource template and prompts with arguments.
"""

from __future__ import annotations

import json
from typing import Any

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.prompts import Message
from fastmcp.tools.base import Tool, ToolResult
from fastmcp.utilities.types import Image
from mcp.types import ToolAnnotations
from serving import parser, serve
from typing_extensions import TypedDict

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201ff0b8f8b1d0000000049454e44ae426082"
)

ORDER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "Address": {
            "type": "object",
            "properties": {
                "street": {"type": "string"},
                "country": {"type": "string", "enum": ["FR", "DE", "US"]},
            },
            "required": ["street", "country"],
            "additionalProperties": False,
        }
    },
    "properties": {
        "item": {"type": "string", "minLength": 1},
        "quantity": {"type": "integer", "minimum": 1, "default": 1},
        "priority": {"type": "string", "enum": ["low", "normal", "high"]},
        "shipping": {
            "type": "object",
            "properties": {
                "address": {"$ref": "#/$defs/Address"},
                "express": {"type": "boolean"},
            },
            "required": ["address"],
            "additionalProperties": False,
        },
    },
    "required": ["item", "shipping"],
    "additionalProperties": False,
}


class OrderTool(Tool):
    """A tool with a hand-written input schema, served verbatim (FastMCP does not rewrite it)."""

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(content=f"order accepted: {json.dumps(arguments, sort_keys=True)}")


class Stats(TypedDict):
    """Result of ``stats``."""

    count: int
    total: float
    labels: list[str]


def create_server(name: str) -> FastMCP:
    """The test server; ``name`` is what ``whoami`` answers."""
    mcp = FastMCP(name="basic", version="1.0.0", dereference_schemas=False)
    mcp.add_tool(
        OrderTool(
            name="create_order",
            description="Place an order (raw JSON schema with $defs and $ref).",
            parameters=ORDER_SCHEMA,
        )
    )

    @mcp.tool
    def stats(values: list[float], label: str = "x") -> Stats:
        """Count and sum numbers (structured output)."""
        return Stats(count=len(values), total=sum(values), labels=[label] * len(values))

    @mcp.tool(
        title="Look up a key",
        annotations=ToolAnnotations(
            title="Lookup (annotation title)", read_only_hint=True, idempotent_hint=True
        ),
        meta={"example.com/owner": "team-a", "example.com/cost": 3},
    )
    def lookup(key: str) -> ToolResult:
        """Look a key up; the result carries _meta."""
        return ToolResult(content=f"value of {key}", meta={"example.com/trace": f"t-{key}"})

    @mcp.tool
    def explode(reason: str) -> str:
        """Always fails with a tool error (isError: true)."""
        raise ToolError(f"exploded: {reason}")

    @mcp.tool
    def snapshot() -> list[Any]:
        """Return an image and a caption."""
        return [Image(data=PNG, format="png"), "a 1x1 png"]

    @mcp.tool
    def whoami() -> str:
        """The name this instance was started with (--name)."""
        return name

    @mcp.resource("basic://readme", mime_type="text/markdown", description="Read me.")
    def readme() -> str:
        return f"# basic ({name})\n"

    @mcp.resource("basic://logo.png", mime_type="image/png")
    def logo() -> bytes:
        return PNG

    @mcp.resource("basic://items/{id}", mime_type="application/json", description="One item.")
    def item(id: str) -> str:
        return json.dumps({"id": id, "owner": name})

    @mcp.prompt(description="Greet someone.")
    def greet(who: str, tone: str = "warm") -> str:
        return f"Say hello to {who} in a {tone} tone."

    @mcp.prompt(title="Review code")
    def review(code: str, language: str = "python") -> list[Message]:
        return [
            Message(f"Review this {language} code:\n{code}"),
            Message("I will review it.", role="assistant"),
        ]

    return mcp


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__, name="basic").parse_args(argv)
    serve(create_server(args.name), args)


if __name__ == "__main__":
    main()
