"""The FastMCP provider that serves the aggregated catalog of every backend."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastmcp.prompts.base import Prompt
from fastmcp.resources.base import Resource
from fastmcp.resources.template import ResourceTemplate
from fastmcp.server.providers import Provider
from fastmcp.tools.base import Tool
from fastmcp.utilities.versions import VersionSpec

from mcp_router.backends.manager import AggregatedIndex, BackendManager
from mcp_router.gateway.components import (
    ForwardingPrompt,
    ForwardingResource,
    ForwardingTemplate,
    ForwardingTool,
)
from mcp_router.gateway.entry import CallEntry


class _Components:
    """FastMCP components for one index snapshot, built once per snapshot."""

    def __init__(
        self,
        index: AggregatedIndex,
        call_entry: CallEntry,
        listed: Callable[[str], bool] | None = None,
    ) -> None:
        self.index = index
        self.tools = {
            name: ForwardingTool.create(call_entry, entry.tool)
            for name, entry in index.tools.items()
        }
        self.prompts = {
            name: ForwardingPrompt.create(call_entry, entry.prompt)
            for name, entry in index.prompts.items()
        }
        self.resources = {
            uri: ForwardingResource.create(call_entry, uri, entry.resource)
            for uri, entry in index.resources.items()
        }
        self.templates = [
            ForwardingTemplate.create(call_entry, entry.template)
            for entry in index.templates.values()
        ]
        # tool-discovery mode lists only pinned tools; every tool stays callable by name
        self.tool_list = [t for n, t in self.tools.items() if listed is None or listed(n)]
        self.prompt_list = list(self.prompts.values())
        self.resource_list = list(self.resources.values())


class RouterProvider(Provider):
    """Serves the tools, resources, templates and prompts of every backend, namespaced.

    ``listed`` (tool-discovery mode) restricts which tools appear in tools/list; tools left out
    are still served by name.
    """

    def __init__(
        self,
        manager: BackendManager,
        call_entry: CallEntry,
        *,
        listed: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__()
        self._manager = manager
        self._entry = call_entry
        self._listed = listed
        self._cache = _Components(manager.index, call_entry, listed)

    def _current(self) -> _Components:
        index = self._manager.index
        if self._cache.index is not index:
            self._cache = _Components(index, self._entry, self._listed)
        return self._cache

    async def _list_tools(self) -> Sequence[Tool]:
        return self._current().tool_list

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        return self._current().tools.get(name)

    async def _list_prompts(self) -> Sequence[Prompt]:
        return self._current().prompt_list

    async def _get_prompt(self, name: str, version: VersionSpec | None = None) -> Prompt | None:
        return self._current().prompts.get(name)

    async def _list_resources(self) -> Sequence[Resource]:
        return self._current().resource_list

    async def _get_resource(self, uri: str, version: VersionSpec | None = None) -> Resource | None:
        current = self._current()
        listed = current.resources.get(uri)
        if listed is not None:
            return listed
        if current.index.resolve_uri(uri) is not None:
            # An instance of a backend template (or an unlisted resource): read it through.
            return ForwardingResource.create(self._entry, uri)
        return None

    async def _list_resource_templates(self) -> Sequence[ResourceTemplate]:
        return self._current().templates
