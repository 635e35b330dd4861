"""What one backend offers: its tools, resources, resource templates and prompts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import mcp_types as types
from mcp.client.session import ClientSession

_MAX_PAGES = 1000  # a backend whose cursor never ends cannot hang discovery

T = TypeVar("T")


@dataclass(frozen=True)
class BackendCatalog:
    """An immutable snapshot of one backend's components, as the backend listed them."""

    tools: dict[str, types.Tool] = field(default_factory=dict)
    resources: list[types.Resource] = field(default_factory=list)
    templates: list[types.ResourceTemplate] = field(default_factory=list)
    prompts: dict[str, types.Prompt] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Component counts, for management output."""
        return {
            "tools": len(self.tools),
            "resources": len(self.resources),
            "resource_templates": len(self.templates),
            "prompts": len(self.prompts),
        }


async def _paged(
    fetch: Callable[[types.PaginatedRequestParams | None], Awaitable[Any]],
    attr: str,
) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await fetch(params)
        items.extend(getattr(page, attr))
        cursor = page.next_cursor
        if not cursor:
            break
    return items


async def _list_tools(session: ClientSession) -> list[types.Tool]:
    return await _paged(lambda p: session.list_tools(params=p), "tools")


async def _list_resources(session: ClientSession) -> list[types.Resource]:
    return await _paged(lambda p: session.list_resources(params=p), "resources")


async def _list_templates(session: ClientSession) -> list[types.ResourceTemplate]:
    return await _paged(lambda p: session.list_resource_templates(params=p), "resource_templates")


async def _list_prompts(session: ClientSession) -> list[types.Prompt]:
    return await _paged(lambda p: session.list_prompts(params=p), "prompts")


async def discover(session: ClientSession) -> BackendCatalog:
    """List everything the backend declares a capability for, following cursors."""
    caps = session.server_capabilities or types.ServerCapabilities()
    tools = await _list_tools(session) if caps.tools is not None else []
    resources: list[types.Resource] = []
    templates: list[types.ResourceTemplate] = []
    if caps.resources is not None:
        resources = await _list_resources(session)
        templates = await _list_templates(session)
    prompts = await _list_prompts(session) if caps.prompts is not None else []
    return BackendCatalog(
        tools={t.name: t for t in tools},
        resources=resources,
        templates=templates,
        prompts={p.name: p for p in prompts},
    )


async def refresh(session: ClientSession, old: BackendCatalog, kind: str) -> BackendCatalog:
    """Re-list one kind of component ("tools", "resources" or "prompts") after list_changed."""
    if kind == "tools":
        tools = await _list_tools(session)
        return BackendCatalog({t.name: t for t in tools}, old.resources, old.templates, old.prompts)
    if kind == "resources":
        resources = await _list_resources(session)
        templates = await _list_templates(session)
        return BackendCatalog(old.tools, resources, templates, old.prompts)
    if kind == "prompts":
        prompts = await _list_prompts(session)
        return BackendCatalog(old.tools, old.resources, old.templates, {p.name: p for p in prompts})
    raise ValueError(f"unknown component kind {kind!r}")


def union(first: BackendCatalog, others: list[BackendCatalog]) -> BackendCatalog:
    """Everything in ``first`` or any of ``others`` (``first``'s definitions win)."""
    tools, prompts = dict(first.tools), dict(first.prompts)
    resources = {str(r.uri): r for r in first.resources}
    templates = {t.uri_template: t for t in first.templates}
    for other in others:
        for name, tool in other.tools.items():
            tools.setdefault(name, tool)
        for name, prompt in other.prompts.items():
            prompts.setdefault(name, prompt)
        for res in other.resources:
            resources.setdefault(str(res.uri), res)
        for tpl in other.templates:
            templates.setdefault(tpl.uri_template, tpl)
    return BackendCatalog(tools, list(resources.values()), list(templates.values()), prompts)
