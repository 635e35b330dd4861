"""List results served from a cache of their wire form.

A ``tools/list`` of 2,000 aggregated tools spends most of its time after the catalog is known:
FastMCP converts each component to an SDK model (``to_mcp_tool``, output-schema rules per era),
then the SDK validates and dumps the result against the protocol version's surface, all again
for every list. The catalog is immutable per index snapshot and its components are built once
per snapshot (`RouterProvider`), so the wire form is a function of what the client is shown,
its protocol version and its cursor.

`ListCachingFastMCP` still runs the whole FastMCP pipeline for every list request: the lifecycle
gate, rate limits, the session registry, each client's capability view, governance filters
(``list_tools()`` with its middleware). Only what follows is cached: the result is keyed by the
identity of the components that pipeline returned (they are immutable, and the cache holds
them, so an identity cannot be reused while its entry lives), the method, the protocol version
and the cursor. Any difference in what a client may see (another profile, another policy,
another snapshot) is a different list of components, so a different key. A miss runs FastMCP's
own handler on the list just obtained; the SDK's serialised result is stored by `ListCache`,
an SDK server middleware around the handler, and a hit returns that stored wire dict instead
of converting and serialising again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import mcp_types
from fastmcp import FastMCP
from fastmcp.server.dependencies import bind_request_context

ListKey = tuple[Any, ...]

_EMPTY: dict[str, Any] = {
    "tools/list": mcp_types.ListToolsResult(tools=[]),
    "resources/list": mcp_types.ListResourcesResult(resources=[]),
    "resources/templates/list": mcp_types.ListResourceTemplatesResult(resource_templates=[]),
    "prompts/list": mcp_types.ListPromptsResult(prompts=[]),
}


@dataclass
class _Slot:
    """What the handler of one list request found, for `ListCache` around it."""

    key: ListKey | None = None
    hit: dict[str, Any] | None = None
    components: Sequence[Any] = ()


@dataclass
class _Entry:
    components: Sequence[Any]  # held so that the ids in the key stay theirs
    wire: dict[str, Any]


_slot: ContextVar[_Slot | None] = ContextVar("mcp_router_list_slot", default=None)
# The components the handler already listed, for FastMCP's handler on a miss (listed once).
_prefetched: ContextVar[Sequence[Any] | None] = ContextVar("mcp_router_prefetched", default=None)


@dataclass
class ListCache:
    """SDK server middleware: stores and serves the wire form of list results (bounded LRU)."""

    max_entries: int = 16
    hits: int = 0  # lists answered from a stored wire form
    _entries: OrderedDict[ListKey, _Entry] = field(default_factory=OrderedDict)

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method not in _EMPTY:
            return await call_next(ctx)
        slot = _Slot()
        token = _slot.set(slot)
        try:
            wire = await call_next(ctx)
        finally:
            _slot.reset(token)
        if slot.hit is not None:
            self.hits += 1
            return dict(slot.hit)
        if slot.key is not None and isinstance(wire, dict):
            self._entries[slot.key] = _Entry(slot.components, wire)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return dict(wire)
        return wire

    def lookup(self, key: ListKey) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry.wire

    def __len__(self) -> int:
        return len(self._entries)


class ListCachingFastMCP(FastMCP):
    """FastMCP whose list handlers reuse the wire form of a list they already served."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.list_cache = ListCache()
        self._mcp_server.middleware.append(self.list_cache)

    async def _cached(
        self,
        method: str,
        ctx: Any,
        params: Any,
        listed: Callable[[], Awaitable[Sequence[Any]]],
        convert: Callable[[Any, Any], Awaitable[Any]],
    ) -> Any:
        slot = _slot.get()
        if slot is None:  # not under ListCache (called directly): nothing to reuse
            return await convert(ctx, params)
        with bind_request_context(ctx):
            components = await listed()
        cursor = params.cursor if params is not None else None
        key = (method, ctx.protocol_version, cursor, tuple(map(id, components)))
        hit = self.list_cache.lookup(key)
        if hit is not None:
            slot.hit = hit
            return _EMPTY[method]  # replaced by the stored wire form in ListCache
        slot.key, slot.components = key, components
        token = _prefetched.set(components)
        try:
            return await convert(ctx, params)
        finally:
            _prefetched.reset(token)

    # ---- handlers: the cache around FastMCP's own conversion

    async def _on_list_tools(self, ctx: Any, params: Any) -> Any:
        return await self._cached(
            "tools/list", ctx, params, self.list_tools, super()._on_list_tools
        )

    async def _on_list_resources(self, ctx: Any, params: Any) -> Any:
        return await self._cached(
            "resources/list", ctx, params, self.list_resources, super()._on_list_resources
        )

    async def _on_list_resource_templates(self, ctx: Any, params: Any) -> Any:
        return await self._cached(
            "resources/templates/list",
            ctx,
            params,
            self.list_resource_templates,
            super()._on_list_resource_templates,
        )

    async def _on_list_prompts(self, ctx: Any, params: Any) -> Any:
        return await self._cached(
            "prompts/list", ctx, params, self.list_prompts, super()._on_list_prompts
        )

    # ---- listings: FastMCP's handler on a miss gets the list the pipeline just returned

    async def list_tools(self, *, run_middleware: bool = True) -> Sequence[Any]:
        prefetched = _prefetched.get()
        if run_middleware and prefetched is not None:
            return prefetched
        return await super().list_tools(run_middleware=run_middleware)

    async def list_resources(self, *, run_middleware: bool = True) -> Sequence[Any]:
        prefetched = _prefetched.get()
        if run_middleware and prefetched is not None:
            return prefetched
        return await super().list_resources(run_middleware=run_middleware)

    async def list_resource_templates(self, *, run_middleware: bool = True) -> Sequence[Any]:
        prefetched = _prefetched.get()
        if run_middleware and prefetched is not None:
            return prefetched
        return await super().list_resource_templates(run_middleware=run_middleware)

    async def list_prompts(self, *, run_middleware: bool = True) -> Sequence[Any]:
        prefetched = _prefetched.get()
        if run_middleware and prefetched is not None:
            return prefetched
        return await super().list_prompts(run_middleware=run_middleware)
