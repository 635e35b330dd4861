"""FastMCP components that forward to backends through the `Forwarder`.

Each holds the backend's own MCP definition (renamed to its exposed name) and serves it back
verbatim in lists: schemas, titles, annotations, icons and ``_meta`` pass through unchanged.
"""

from __future__ import annotations

import base64
from typing import Any

import mcp_types as types
from fastmcp.exceptions import NotFoundError, PromptError, ResourceError, ToolError
from fastmcp.prompts.base import Message, Prompt, PromptArgument, PromptResult
from fastmcp.resources.base import Resource, ResourceContent, ResourceResult
from fastmcp.resources.template import ResourceTemplate
from fastmcp.server.context import Context
from fastmcp.tools.base import Tool, ToolResult
from mcp.shared.exceptions import MCPError

from mcp_router.gateway.relay import FrontCall
from mcp_router.routing.forwarder import Forwarder, RoutingError, UnknownComponentError


def progress_forwarder(context: Context | None) -> Any:
    """A per-call progress callback relaying backend progress to this call's client only.

    The front session and progress token are captured now, not looked up when progress
    arrives: the SDK runs the callback in the backend session's reader task, where the
    front request's context is gone (stdio and SSE backends).
    """
    call = FrontCall.from_context(context)
    if call is None or call.progress_token is None:
        return None
    return call.progress


class ForwardingTool(Tool):
    """A backend tool, exposed under its namespaced name."""

    _forwarder: Forwarder
    _wire: types.Tool

    @classmethod
    def create(cls, forwarder: Forwarder, wire: types.Tool) -> ForwardingTool:
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
        tool._forwarder = forwarder
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
        if context is None:
            from fastmcp.server.dependencies import get_context

            context = get_context()
        try:
            result = await self._forwarder.call_tool(
                self.name, arguments, progress_callback=progress_forwarder(context)
            )
        except UnknownComponentError as exc:
            raise NotFoundError(str(exc)) from exc
        except RoutingError as exc:
            raise ToolError(f"mcp-router: {exc}") from exc
        return ToolResult.from_mcp_result(result)


# -32002 is the spec's "resource not found"; -32602 is what FastMCP and the SDK send for it.
_NOT_FOUND_CODES = frozenset({-32002, types.INVALID_PARAMS})


def _resource_result(result: types.ReadResourceResult) -> ResourceResult:
    contents: list[ResourceContent] = []
    for item in result.contents:
        if isinstance(item, types.TextResourceContents):
            contents.append(ResourceContent(item.text, mime_type=item.mime_type, meta=item.meta))
        elif isinstance(item, types.BlobResourceContents):
            contents.append(
                ResourceContent(
                    base64.b64decode(item.blob), mime_type=item.mime_type, meta=item.meta
                )
            )
    return ResourceResult(contents=contents, meta=result.meta)


async def _read(forwarder: Forwarder, uri: str) -> ResourceResult:
    try:
        result = await forwarder.read_resource(uri)
    except UnknownComponentError as exc:
        raise NotFoundError(str(exc)) from exc
    except RoutingError as exc:
        raise ResourceError(f"mcp-router: {exc}") from exc
    except MCPError as exc:
        if exc.error.code in _NOT_FOUND_CODES:
            # The backend knows only its own URI; the client asked for the exposed one.
            raise NotFoundError(f"Unknown resource: {uri!r}") from exc
        raise ResourceError(exc.error.message) from exc
    return _resource_result(result)


class ForwardingResource(Resource):
    """A backend resource (listed, or an instance of a backend template)."""

    _forwarder: Forwarder
    _wire: types.Resource | None = None

    @classmethod
    def create(
        cls, forwarder: Forwarder, uri: str, wire: types.Resource | None = None
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
        res._forwarder = forwarder
        res._wire = wire
        return res

    def to_mcp_resource(self, **overrides: Any) -> types.Resource:
        """The backend's definition, verbatim but for the exposed URI."""
        if self._wire is not None and not (set(overrides) - {"uri"}):
            return self._wire
        return super().to_mcp_resource(**overrides)

    async def read(self) -> ResourceResult:
        """Read through the router."""
        return await _read(self._forwarder, str(self.uri))

    async def _read(self) -> ResourceResult:
        return await self.read()


class ForwardingTemplate(ResourceTemplate):
    """A backend resource template, exposed with a namespaced URI template."""

    _forwarder: Forwarder
    _wire: types.ResourceTemplate

    @classmethod
    def create(cls, forwarder: Forwarder, wire: types.ResourceTemplate) -> ForwardingTemplate:
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
        tpl._forwarder = forwarder
        tpl._wire = wire
        return tpl

    def to_mcp_template(self, **overrides: Any) -> types.ResourceTemplate:
        """The backend's definition, verbatim but for the exposed URI template."""
        if not (set(overrides) - {"uriTemplate", "uri_template"}):
            return self._wire
        return super().to_mcp_template(**overrides)

    async def _read(self, uri: str, params: dict[str, Any]) -> ResourceResult:
        return await _read(self._forwarder, uri)

    async def read(self, arguments: dict[str, Any]) -> ResourceResult:
        """Not used: reads go through `_read` with the concrete URI."""
        raise ResourceError("template reads need a concrete URI")


class ForwardingPrompt(Prompt):
    """A backend prompt, exposed under its namespaced name."""

    _forwarder: Forwarder
    _wire: types.Prompt

    @classmethod
    def create(cls, forwarder: Forwarder, wire: types.Prompt) -> ForwardingPrompt:
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
        prompt._forwarder = forwarder
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
        try:
            result = await self._forwarder.get_prompt(self.name, args)
        except UnknownComponentError as exc:
            raise NotFoundError(str(exc)) from exc
        except RoutingError as exc:
            raise PromptError(f"mcp-router: {exc}") from exc
        return PromptResult(
            messages=[Message(content=m.content, role=m.role) for m in result.messages],
            description=result.description,
            meta=result.meta,
        )
