"""FastMCP components that forward to backends through the one `CallEntry`.

Each holds the backend's own MCP definition (renamed to its exposed name) and serves it back
verbatim in lists: schemas, titles, annotations, icons and ``_meta`` pass through unchanged.
Requests for them are normally answered by the routing middleware before FastMCP reaches the
component; the component's own run/read/render is the same entry, for the request that
arrives while the index is being swapped.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from fastmcp.exceptions import ResourceError
from fastmcp.prompts.base import InputRequiredPromptResult, Prompt, PromptArgument, PromptResult
from fastmcp.resources.base import InputRequiredResourceResult, Resource, ResourceResult
from fastmcp.resources.template import ResourceTemplate
from fastmcp.server.context import Context
from fastmcp.server.dependencies import get_context
from fastmcp.tools.base import InputRequiredToolResult, Tool, ToolResult
from pydantic import PrivateAttr

from mcp_router.gateway.entry import CallEntry


class VerbatimResourceResult(ResourceResult):
    """A backend's ``resources/read`` result, carried through FastMCP unchanged."""

    _wire: types.ReadResourceResult = PrivateAttr()

    @classmethod
    def of(cls, wire: types.ReadResourceResult) -> VerbatimResourceResult:
        """Wrap the backend's result (`resource_result` keeps an input round one)."""
        result = cls(contents=[])
        result._wire = wire
        return result

    def to_mcp_result(self, uri: Any) -> types.ReadResourceResult:
        """The backend's result as it came (contents, ``_meta``)."""
        return self._wire


class VerbatimPromptResult(PromptResult):
    """A backend's ``prompts/get`` result, carried through FastMCP unchanged."""

    _wire: types.GetPromptResult = PrivateAttr()

    @classmethod
    def of(cls, wire: types.GetPromptResult) -> VerbatimPromptResult:
        """Wrap the backend's result (`prompt_result` keeps an input round one)."""
        result = cls(messages=[])
        result._wire = wire
        return result

    def to_mcp_prompt_result(self) -> types.GetPromptResult:
        """The backend's result as it came (messages, description, ``_meta``)."""
        return self._wire


def tool_result(result: types.CallToolResult | types.InputRequiredResult) -> ToolResult:
    """The entry's answer as FastMCP's tool result (an input round stays one)."""
    if isinstance(result, types.InputRequiredResult):
        return InputRequiredToolResult(result)
    return ToolResult.from_mcp_result(result)


def resource_result(
    wire: types.ReadResourceResult | types.InputRequiredResult,
) -> ResourceResult:
    """The entry's answer to a read as FastMCP's resource result (a modern backend's
    ``InputRequiredResult`` stays one)."""
    if isinstance(wire, types.InputRequiredResult):
        return InputRequiredResourceResult(wire)
    return VerbatimResourceResult.of(wire)


def prompt_result(wire: types.GetPromptResult | types.InputRequiredResult) -> PromptResult:
    """The entry's answer to a prompt get as FastMCP's prompt result (likewise)."""
    if isinstance(wire, types.InputRequiredResult):
        return InputRequiredPromptResult(wire)
    return VerbatimPromptResult.of(wire)


def _context() -> Context | None:
    try:
        return get_context()
    except RuntimeError:  # no request context (called outside a request)
        return None


class ForwardingTool(Tool):
    """A backend tool, exposed under its namespaced name."""

    _entry: CallEntry
    _wire: types.Tool

    @classmethod
    def create(cls, entry: CallEntry, wire: types.Tool) -> ForwardingTool:
        """Wrap a backend tool definition whose name is already the exposed name."""
        tool = cls(
            name=wire.name,
            title=wire.title,
            description=wire.description,
            parameters=wire.input_schema,
            output_schema=wire.output_schema,
            annotations=wire.annotations,
            icons=wire.icons,
            meta=wire.meta,
            execution=wire.execution,
        )
        tool._entry = entry
        tool._wire = wire
        return tool

    def to_mcp_tool(self, **overrides: Any) -> types.Tool:
        """The backend's definition, verbatim but for the exposed name."""
        # One dict read: pydantic's private-attribute lookup is slow on a 2,000-tool list.
        wire: types.Tool = self.__pydantic_private__["_wire"]  # type: ignore[index]
        if (
            overrides.get("name", wire.name) == wire.name
            and overrides.get("outputSchema", self.output_schema) is self.output_schema
        ):
            return wire
        return super().to_mcp_tool(**overrides)

    async def run(self, arguments: dict[str, Any], context: Context | None = None) -> ToolResult:
        """Route the call and return the backend's result unchanged."""
        return tool_result(await self._entry.call_tool(context or _context(), self.name, arguments))


class ForwardingResource(Resource):
    """A backend resource (listed, or an instance of a backend template)."""

    _entry: CallEntry
    _wire: types.Resource | None = None

    @classmethod
    def create(
        cls, entry: CallEntry, uri: str, wire: types.Resource | None = None
    ) -> ForwardingResource:
        """Wrap a resource whose URI is already the exposed URI."""
        if wire is not None:
            res = cls(
                uri=uri,
                name=wire.name,
                title=wire.title,
                description=wire.description,
                mime_type=wire.mime_type or "text/plain",
                icons=wire.icons,
                annotations=wire.annotations,
                meta=wire.meta,
            )
        else:
            res = cls(uri=uri, name=uri)
        res._entry = entry
        res._wire = wire
        return res

    def to_mcp_resource(self, **overrides: Any) -> types.Resource:
        """The backend's definition, verbatim but for the exposed URI."""
        if self._wire is not None and not (set(overrides) - {"uri"}):
            return self._wire
        return super().to_mcp_resource(**overrides)

    async def read(self) -> ResourceResult:
        """Read through the router."""
        return resource_result(await self._entry.read_resource(_context(), str(self.uri)))

    async def _read(self) -> ResourceResult:
        return await self.read()


class ForwardingTemplate(ResourceTemplate):
    """A backend resource template, exposed with a namespaced URI template."""

    _entry: CallEntry
    _wire: types.ResourceTemplate

    @classmethod
    def create(cls, entry: CallEntry, wire: types.ResourceTemplate) -> ForwardingTemplate:
        """Wrap a template whose URI template is already the exposed one."""
        tpl = cls(
            uri_template=wire.uri_template,
            name=wire.name,
            title=wire.title,
            description=wire.description,
            mime_type=wire.mime_type or "text/plain",
            icons=wire.icons,
            annotations=wire.annotations,
            meta=wire.meta,
            parameters={},
        )
        tpl._entry = entry
        tpl._wire = wire
        return tpl

    def to_mcp_template(self, **overrides: Any) -> types.ResourceTemplate:
        """The backend's definition, verbatim but for the exposed URI template."""
        if not (set(overrides) - {"uriTemplate", "uri_template"}):
            return self._wire
        return super().to_mcp_template(**overrides)

    async def _read(self, uri: str, params: dict[str, Any]) -> ResourceResult:
        return resource_result(await self._entry.read_resource(_context(), uri))

    async def read(self, arguments: dict[str, Any]) -> ResourceResult:
        """Not used: reads go through `_read` with the concrete URI."""
        raise ResourceError("template reads need a concrete URI")


class ForwardingPrompt(Prompt):
    """A backend prompt, exposed under its namespaced name."""

    _entry: CallEntry
    _wire: types.Prompt

    @classmethod
    def create(cls, entry: CallEntry, wire: types.Prompt) -> ForwardingPrompt:
        """Wrap a prompt definition whose name is already the exposed name."""
        prompt = cls(
            name=wire.name,
            title=wire.title,
            description=wire.description,
            arguments=[
                PromptArgument(
                    name=a.name, title=a.title, description=a.description, required=a.required
                )
                for a in wire.arguments or []
            ],
            icons=wire.icons,
            meta=wire.meta,
        )
        prompt._entry = entry
        prompt._wire = wire
        return prompt

    def to_mcp_prompt(self, **overrides: Any) -> types.Prompt:
        """The backend's definition, verbatim but for the exposed name."""
        if overrides.get("name", self.name) == self._wire.name and len(overrides) <= 1:
            return self._wire
        return super().to_mcp_prompt(**overrides)

    async def render(self, arguments: dict[str, Any] | None = None) -> PromptResult:
        """Get the prompt from its backend."""
        args = {k: v if isinstance(v, str) else str(v) for k, v in (arguments or {}).items()}
        return prompt_result(await self._entry.get_prompt(_context(), self.name, args))
