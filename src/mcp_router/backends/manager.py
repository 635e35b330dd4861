"""All backends together: start and stop them, and keep the aggregated, namespaced index.

The index (`AggregatedIndex`) is an immutable snapshot rebuilt whenever a backend's catalog
changes (connect, reconnect, list_changed). Lookups on the hot path are plain dict reads on
the current snapshot; nothing is rebuilt per call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import mcp_types as types
from fastmcp.resources.template import build_regex

from mcp_router.backends.backend import Backend
from mcp_router.backends.group import BackendGroup, group_backends
from mcp_router.backends.transports import TransportLimits
from mcp_router.config.models import RESERVED_NAMESPACE, BackendConfig, RouterConfig
from mcp_router.links import HandedOutUris, expose_tool_definition
from mcp_router.naming import NameCodec, UriCodec
from mcp_router.shaping import ShapedTool, shape_tools

logger = logging.getLogger("mcp_router.manager")

RESERVED_TOOL_PREFIX = RESERVED_NAMESPACE + "_"  # the router's own tools: router_list_backends...


@dataclass(frozen=True)
class ExposedTool:
    """A tool as clients see it, and where it comes from."""

    exposed_name: str
    group: str
    namespace: str
    original_name: str
    tool: types.Tool  # the backend's definition with the exposed name; everything else verbatim

    @property
    def safe_to_retry(self) -> bool:
        """The tool says repeating it is harmless (idempotent or read-only)."""
        ann = self.tool.annotations
        return bool(ann and (ann.idempotent_hint or ann.read_only_hint))


@dataclass(frozen=True)
class ExposedPrompt:
    """A prompt as clients see it, and where it comes from."""

    exposed_name: str
    group: str
    namespace: str
    original_name: str
    prompt: types.Prompt


@dataclass(frozen=True)
class ExposedResource:
    """A listed resource as clients see it, and where it comes from."""

    exposed_uri: str
    group: str
    namespace: str
    original_uri: str
    resource: types.Resource
    owners: tuple[str, ...]  # the backends that list it


@dataclass(frozen=True)
class ExposedTemplate:
    """A resource template as clients see it, and where it comes from."""

    exposed_template: str
    group: str
    namespace: str
    original_template: str
    template: types.ResourceTemplate


@dataclass(frozen=True)
class ResolvedUri:
    """Where an exposed resource URI leads: its group, original URI and, if listed, owners."""

    group: str
    original_uri: str
    owners: tuple[str, ...] | None  # None: a template instance or unlisted resource


@dataclass(frozen=True)
class AggregatedIndex:
    """Everything every backend offers, namespaced; one immutable snapshot."""

    tools: dict[str, ExposedTool] = field(default_factory=dict)
    prompts: dict[str, ExposedPrompt] = field(default_factory=dict)
    resources: dict[str, ExposedResource] = field(default_factory=dict)
    templates: dict[str, ExposedTemplate] = field(default_factory=dict)
    uri_codec: UriCodec = field(default_factory=lambda: UriCodec([]))
    group_of_namespace: dict[str, str] = field(default_factory=dict)
    # per group: the compiled URI templates of its members (original form)
    template_patterns: dict[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict)
    open_groups: frozenset[str] = frozenset()  # a member has `allow_unlisted_uris: true`
    # URIs backends handed out in results (links.py); shared by every snapshot
    handed_out: HandedOutUris = field(default_factory=HandedOutUris)

    def resolve_uri(self, exposed_uri: str) -> ResolvedUri | None:
        """Map an exposed URI back to its backend side: a listed resource, a URI a backend
        handed out in a result, an instance of a listed template, or (opt-in per backend)
        any URI in the group's namespace."""
        listed = self.resources.get(exposed_uri)
        if listed is not None:
            return ResolvedUri(listed.group, listed.original_uri, listed.owners)
        handed = self.handed_out.resolve(exposed_uri)
        if handed is not None and handed.group in self.group_of_namespace:
            return ResolvedUri(handed.group, handed.original_uri, (handed.backend,))
        decoded = self.uri_codec.decode(exposed_uri)
        if decoded is None:
            return None
        group = self.group_of_namespace.get(decoded[0])
        if group is None:
            return None
        original = decoded[1]
        if group in self.open_groups or _matches_template(
            original, self.template_patterns.get(group, ())
        ):
            return ResolvedUri(group, original, None)
        return None

    def signature(self) -> dict[str, frozenset[str]]:
        """What a client's lists would show, whole definitions included, to tell which
        lists changed: a new description, title, schema or annotation is a change, not only
        a new or removed name (clients keep the definitions they listed)."""
        return {
            "tools": frozenset(_wire(e.tool) for e in self.tools.values()),
            "prompts": frozenset(_wire(e.prompt) for e in self.prompts.values()),
            "resources": frozenset(_wire(e.resource) for e in self.resources.values())
            | frozenset(_wire(e.template) for e in self.templates.values()),
        }


def _matches_template(uri: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    path = uri.partition("?")[0]  # `{?query}` parts are not in the patterns
    return any(p.match(uri) or p.match(path) for p in patterns)


def _wire(definition: types.Tool | types.Prompt | types.Resource | types.ResourceTemplate) -> str:
    return definition.model_dump_json(by_alias=True, exclude_none=True)


IndexListener = Callable[[AggregatedIndex, set[str]], Awaitable[None]]
BackendListener = Callable[[Backend], Awaitable[None]]
MessageListener = Callable[[Backend, Any], Awaitable[None]]


class BackendManager:
    """Starts, supervises and stops every configured backend; owns the aggregated index."""

    def __init__(self, config: RouterConfig, limits: TransportLimits | None = None) -> None:
        self.config = config
        self.limits = limits or TransportLimits()  # what backends may send (MCP_MAX_*)
        routing = config.routing
        self.separator = routing.namespace_separator
        self.prefixing = routing.enable_namespace_prefixing
        self._listeners: list[IndexListener] = []
        self._backend_listeners: list[BackendListener] = []
        self._message_listeners: list[MessageListener] = []
        self._announced: dict[str, int] = {}  # backend -> connections already announced
        self.backends: dict[str, Backend] = {
            bc.name: self._new_backend(bc) for bc in config.backends if bc.enabled
        }
        self.handed_out = HandedOutUris()  # outlives index snapshots
        self.index = AggregatedIndex(handed_out=self.handed_out)
        # Sees every new index before it is served (governance pinning); returns the list
        # kinds it changed for clients (e.g. a quarantined tool), to announce with the rest.
        self.catalog_guard: Callable[[list[Backend], AggregatedIndex], set[str]] | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self.discovery_done = anyio.Event()

    # ------------------------------------------------------------------ groups

    @property
    def groups(self) -> dict[str, BackendGroup[Backend]]:
        """The replica groups (backends sharing a namespace; "" holds the unprefixed)."""
        return group_backends(self.backends.values())

    def add_listener(self, listener: IndexListener) -> None:
        """Be told (with the set of changed list kinds) whenever the index changes."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ life cycle

    async def start(self, tg: anyio.abc.TaskGroup, *, startup_timeout: float | None = None) -> None:
        """Start every backend concurrently and wait (bounded) for their first discovery.

        A backend that is down does not hold the others up: the router starts degraded and
        the backend keeps reconnecting in the background.
        """
        self._tg = tg
        for backend in self.backends.values():
            await tg.start(backend.run)

        async def wait_one(backend: Backend) -> None:
            timeout = startup_timeout or backend.config.connect_timeout_seconds
            if not await backend.wait_first_attempt(timeout):
                logger.warning(
                    "backend '%s' is not available at start-up: the router starts without it "
                    "and keeps retrying in the background (%s)",
                    backend.name,
                    backend.unavailable_reason(),
                )

        async with anyio.create_task_group() as waits:
            for backend in self.backends.values():
                waits.start_soon(wait_one, backend)
        await self.rebuild()
        self.discovery_done.set()
        ready = sum(1 for b in self.backends.values() if b.state.value == "connected")
        logger.info(
            "discovery done: %d/%d backends connected, %d tools, %d resources, %d templates, "
            "%d prompts",
            ready,
            len(self.backends),
            len(self.index.tools),
            len(self.index.resources),
            len(self.index.templates),
            len(self.index.prompts),
        )

    async def stop(self) -> None:
        """Stop every backend (closing sessions and stdio children)."""
        for backend in self.backends.values():
            await backend.stop()

    def add_backend_listener(self, listener: BackendListener) -> None:
        """Be told when a backend (re)connects, with the backend."""
        self._backend_listeners.append(listener)

    def add_message_listener(self, listener: MessageListener) -> None:
        """Be given every backend notification that is not a list change."""
        self._message_listeners.append(listener)

    async def _on_catalog_change(self, backend: Backend) -> None:
        if backend.connect_count != self._announced.get(backend.name, 0):
            self._announced[backend.name] = backend.connect_count  # a new session: announce it
            for listener in self._backend_listeners:
                try:
                    await listener(backend)
                except Exception:
                    logger.exception("backend listener failed for '%s'", backend.name)
        if self.discovery_done.is_set():
            await self.rebuild()

    async def _on_notification(self, backend: Backend, message: Any) -> None:
        for listener in self._message_listeners:
            await listener(backend, message)

    # ------------------------------------------------------------------ runtime changes
    # Used by config reload. None of these rebuild the index: the caller applies a whole diff,
    # updates the routing engine, then calls `rebuild()` once, so clients see one change.

    async def apply_config(
        self,
        new: RouterConfig,
        added: Sequence[BackendConfig],
        removed: Sequence[str],
        changed: Sequence[BackendConfig],
    ) -> list[Backend]:
        """Take a new configuration: start added and changed backends (concurrently, each
        given its connect timeout, so replacements are connected before they are routed to),
        stop routing to removed and replaced ones, put backends in config order and apply
        naming and timeout settings. Returns the retired backends, for the caller to stop
        once the index no longer points at them."""
        launched: list[Backend] = []

        async def launch(bc: BackendConfig) -> None:
            launched.append(await self.launch(bc, wait=bc.connect_timeout_seconds))

        self.config = new
        async with anyio.create_task_group() as tg:
            for bc in [*added, *changed]:
                tg.start_soon(launch, bc)
        # From here on nothing awaits: calls see the old set or the new, whole.
        retired = [old for name in removed if (old := self.detach(name)) is not None]
        retired += [old for backend in launched if (old := self.install(backend)) is not None]
        self.reorder([b.name for b in new.backends])
        routing = new.routing
        self.separator = routing.namespace_separator
        self.prefixing = routing.enable_namespace_prefixing
        for backend in self.backends.values():
            backend.namespace = backend.config.effective_namespace if self.prefixing else ""
            backend.request_timeout = (
                backend.config.timeout_seconds or routing.request_timeout_seconds
            )
        return retired

    def _new_backend(self, bc: BackendConfig) -> Backend:
        backend = Backend(
            bc,
            request_timeout=self.config.routing.request_timeout_seconds,
            on_catalog_change=self._on_catalog_change,
            on_notification=self._on_notification,
            limits=self.limits,
        )
        if not self.prefixing:
            backend.namespace = ""  # no prefixes: every backend joins the unprefixed group
        return backend

    async def launch(self, bc: BackendConfig, *, wait: float | None = None) -> Backend:
        """Start a backend for ``bc`` (not yet routed to); wait up to ``wait`` s for discovery.

        The caller then installs it with :meth:`install`. Starting first means a changed
        backend's replacement is connected before the old one is stopped.
        """
        if self._tg is None:
            raise RuntimeError("the manager is not started")
        backend = self._new_backend(bc)
        await self._tg.start(backend.run)
        if wait:
            await backend.wait_ready(wait)
        return backend

    def install(self, backend: Backend) -> Backend | None:
        """Route to ``backend`` under its name; return the backend it replaces, if any.

        The caller stops the replaced backend once the index no longer points at it.
        """
        old = self.backends.get(backend.name)
        self.backends[backend.name] = backend
        return old if old is not backend else None

    def detach(self, name: str) -> Backend | None:
        """Stop routing to backend ``name``; return it (for the caller to stop), or None."""
        self.handed_out.forget(name)  # a removed backend's handed-out URIs lead nowhere
        return self.backends.pop(name, None)

    def reorder(self, names: Sequence[str]) -> None:
        """Put the backends in config order (groups earlier in the file claim names first)."""
        rank = {name: i for i, name in enumerate(names)}
        self.backends = dict(
            sorted(self.backends.items(), key=lambda item: rank.get(item[0], len(rank)))
        )

    # ------------------------------------------------------------------ index

    async def rebuild(self) -> None:
        """Rebuild the aggregated index from every backend's current catalog."""
        old = self.index
        backends = list(self.backends.values())
        index = build_index(backends, self.separator, self.prefixing, handed_out=self.handed_out)
        guarded = self.catalog_guard(backends, index) if self.catalog_guard else set()
        self.index = index
        old_sig, new_sig = old.signature(), self.index.signature()
        changed = {kind for kind in new_sig if new_sig[kind] != old_sig[kind]} | guarded
        if changed:
            for listener in self._listeners:
                try:
                    await listener(self.index, changed)
                except Exception:
                    logger.exception("index listener failed")


def build_index(
    backends: Sequence[Backend],
    separator: str,
    prefixing: bool,
    *,
    handed_out: HandedOutUris | None = None,
) -> AggregatedIndex:
    """Aggregate catalogs into exposed names; groups in config order claim names first."""
    groups = {ns: group.members for ns, group in group_backends(backends).items()}
    namespace_of = {g: g for g in groups}  # a group is named by its namespace

    tool_codec = NameCodec(separator=separator, prefixing=prefixing)
    prompt_codec = NameCodec(separator=separator, prefixing=prefixing)
    group_tools: dict[str, dict[str, ShapedTool]] = {}
    group_prompts: dict[str, dict[str, types.Prompt]] = {}
    for g, members in groups.items():
        tools: dict[str, ShapedTool] = {}
        prompts: dict[str, types.Prompt] = {}
        for b in members:  # replicas: first member's definition wins, names are the union
            # per-backend shaping (include/exclude/rename/descriptions), see mcp_router.shaping
            offered = b.offered  # over all its sessions (backends/capabilities.py)
            shaped = shape_tools(b.config.tools, offered.tools, backend=b.name)
            for name, shaped_tool in shaped.items():
                tools.setdefault(name, shaped_tool)
            for name, prompt in offered.prompts.items():
                prompts.setdefault(name, prompt)
        group_tools[g], group_prompts[g] = tools, prompts
        tool_codec.add_group(g, namespace_of[g], tools)
        prompt_codec.add_group(g, namespace_of[g], prompts)
    tool_codec.build()
    prompt_codec.build()
    for collision in [*tool_codec.collisions, *prompt_codec.collisions]:
        logger.warning("name collision: %s", collision.describe())

    uri_codec = UriCodec(list(namespace_of.values()), prefixing=prefixing)  # "" = unprefixed
    exposed_tools: dict[str, ExposedTool] = {}
    for exposed, g, name in tool_codec.items():
        shaped_tool = group_tools[g][name]
        if exposed.startswith(RESERVED_TOOL_PREFIX):
            # Only an unprefixed backend can get here (config rejects a `router` namespace).
            # Its tool would shadow one of the router's own, or receive calls meant for it.
            logger.warning(
                "tool %r of group %r is not exposed: names starting with %r are reserved for "
                "the router's own tools (rename it with `tools.rename` or give the backend a "
                "namespace)",
                exposed,
                g,
                RESERVED_TOOL_PREFIX,
            )
            continue
        exposed_tools[exposed] = ExposedTool(
            exposed,
            g,
            namespace_of[g],
            shaped_tool.original,
            expose_tool_definition(
                shaped_tool.tool.model_copy(update={"name": exposed}), uri_codec, namespace_of[g]
            ),
        )
    exposed_prompts: dict[str, ExposedPrompt] = {}
    for exposed, g, original in prompt_codec.items():
        prompt = group_prompts[g][original]
        exposed_prompts[exposed] = ExposedPrompt(
            exposed, g, namespace_of[g], original, prompt.model_copy(update={"name": exposed})
        )

    resources: dict[str, ExposedResource] = {}
    templates: dict[str, ExposedTemplate] = {}
    for g, members in groups.items():
        ns = namespace_of[g]
        for b in members:
            for res in b.offered.resources:
                uri = str(res.uri)
                exposed_uri = uri_codec.encode(ns, uri)
                known = resources.get(exposed_uri)
                if known is not None:
                    if b.name not in known.owners:
                        resources[exposed_uri] = replace(known, owners=(*known.owners, b.name))
                    continue
                resources[exposed_uri] = ExposedResource(
                    exposed_uri, g, ns, uri, res.model_copy(update={"uri": exposed_uri}), (b.name,)
                )
            for tpl in b.offered.templates:
                exposed_tpl = uri_codec.encode(ns, tpl.uri_template)
                if exposed_tpl in templates:
                    continue
                templates[exposed_tpl] = ExposedTemplate(
                    exposed_tpl,
                    g,
                    ns,
                    tpl.uri_template,
                    tpl.model_copy(update={"uri_template": exposed_tpl}),
                )
    # Every member's templates (a replica's may be shadowed in the list by an equal one).
    patterns: dict[str, list[re.Pattern[str]]] = {}
    for g, members in groups.items():
        for b in members:
            for tpl in b.offered.templates:
                compiled = build_regex(tpl.uri_template)
                if compiled is not None and all(
                    p.pattern != compiled.pattern for p in patterns.get(g, ())
                ):
                    patterns.setdefault(g, []).append(compiled)
    return AggregatedIndex(
        template_patterns={g: tuple(p) for g, p in patterns.items()},
        open_groups=frozenset(
            g for g, members in groups.items() if any(b.config.allow_unlisted_uris for b in members)
        ),
        tools=exposed_tools,
        prompts=exposed_prompts,
        resources=resources,
        templates=templates,
        uri_codec=uri_codec,
        group_of_namespace=dict(namespace_of),
        handed_out=handed_out if handed_out is not None else HandedOutUris(),
    )
