"""Each client is listed (and reads, and gets prompts from) the backend sessions serving it.

A backend may list some tools only to clients that declared a capability (server-everything's
``trigger-sampling-request`` needs sampling). The router talks to such a backend over several
sessions (one per client capability profile, or one per client in ``session_mode:
per_client``; see backends/capabilities.py), and the aggregated index holds the union of what
they list. This middleware opens the sessions that serve the calling client (on its first
list) and hides from its lists what those sessions do not offer, so a client sees exactly
the tools it can use.

Cost: when no backend has more than its main session (the common case), one pass over the
backends per list and nothing else; otherwise the hidden set is computed once per index
snapshot and combination of session catalogs, then reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastmcp.server.middleware import Middleware, MiddlewareContext
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_router.backends.backend import Backend
from mcp_router.backends.catalog import BackendCatalog
from mcp_router.backends.manager import AggregatedIndex, BackendManager
from mcp_router.call_context import FrontCall, current_call

_CACHE_LIMIT = 256


class _Hidden:
    """The exposed names and URIs one client's sessions do not offer."""

    __slots__ = ("prompts", "resources", "templates", "tools")

    def __init__(self, index: AggregatedIndex, offered: dict[str, list[BackendCatalog]]) -> None:
        def offers(group: str, test: Any) -> bool:
            return any(test(cat) for cat in offered.get(group, ()))

        self.tools = frozenset(
            name
            for name, e in index.tools.items()
            if not offers(e.group, lambda c, o=e.original_name: o in c.tools)
        )
        self.prompts = frozenset(
            name
            for name, e in index.prompts.items()
            if not offers(e.group, lambda c, o=e.original_name: o in c.prompts)
        )
        self.resources = frozenset(
            uri
            for uri, e in index.resources.items()
            if not offers(
                e.group, lambda c, o=e.original_uri: any(str(r.uri) == o for r in c.resources)
            )
        )
        self.templates = frozenset(
            uri
            for uri, e in index.templates.items()
            if not offers(
                e.group,
                lambda c, o=e.original_template: any(t.uri_template == o for t in c.templates),
            )
        )


class CapabilityViews(Middleware):
    """Filters tools/prompts/resources/templates lists to what the client's sessions offer."""

    def __init__(self, manager: BackendManager) -> None:
        self._manager = manager
        self._cache: dict[tuple[int, ...], _Hidden] = {}
        self._indexed: set[int] = set()  # session catalogs already folded into the index

    async def _hidden(self, context: MiddlewareContext[Any]) -> _Hidden | None:
        ctx = context.fastmcp_context
        rc = ctx.request_context if ctx is not None else None
        if rc is None:
            return None
        session = rc.session
        connection = getattr(session, "_connection", None)
        modern = getattr(session, "protocol_version", None) in MODERN_PROTOCOL_VERSIONS
        chosen: list[tuple[Backend, BackendCatalog]] = []
        stale = False
        for backend in list(self._manager.backends.values()):
            serving = await backend.session_for(connection, modern=modern, wait=False)
            catalog = serving.catalog if serving.has_session else backend.catalog
            if serving is not backend and id(catalog) not in self._indexed:
                stale = True  # a session just opened: its catalog is not in the index yet
                self._indexed.add(id(catalog))
            chosen.append((backend, catalog))
        if stale:
            if len(self._indexed) > _CACHE_LIMIT * 4:
                self._indexed.clear()
            await self._manager.rebuild()
        if all(catalog is backend.offered for backend, catalog in chosen):
            return None  # the client's sessions offer all the index lists
        index = self._manager.index
        key = (id(index), *(id(catalog) for _, catalog in chosen))
        hidden = self._cache.get(key)
        if hidden is None:
            offered: dict[str, list[BackendCatalog]] = {}
            for backend, catalog in chosen:
                offered.setdefault(backend.namespace, []).append(catalog)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            hidden = self._cache[key] = _Hidden(index, offered)
        return hidden

    async def _as_client(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        # Reads and prompt gets go to the session serving this client, as its calls do
        # (`Backend.for_client` reads the captured front request).
        token = current_call.set(FrontCall.from_context(context.fastmcp_context))
        try:
            return await call_next(context)
        finally:
            current_call.reset(token)

    async def on_read_resource(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        return await self._as_client(context, call_next)

    async def on_get_prompt(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        return await self._as_client(context, call_next)

    async def on_list_tools(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        hidden = await self._hidden(context)
        tools: Sequence[Any] = await call_next(context)
        if hidden is None or not hidden.tools:
            return tools
        return [t for t in tools if t.name not in hidden.tools]

    async def on_list_prompts(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        hidden = await self._hidden(context)
        prompts: Sequence[Any] = await call_next(context)
        if hidden is None or not hidden.prompts:
            return prompts
        return [p for p in prompts if p.name not in hidden.prompts]

    async def on_list_resources(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        hidden = await self._hidden(context)
        resources: Sequence[Any] = await call_next(context)
        if hidden is None or not hidden.resources:
            return resources
        return [r for r in resources if str(r.uri) not in hidden.resources]

    async def on_list_resource_templates(
        self, context: MiddlewareContext[Any], call_next: Any
    ) -> Any:
        hidden = await self._hidden(context)
        templates: Sequence[Any] = await call_next(context)
        if hidden is None or not hidden.templates:
            return templates
        return [t for t in templates if t.uri_template not in hidden.templates]
