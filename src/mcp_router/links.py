"""Resource URIs that backends hand out inside results, made readable through the router.

A tool result (or a rendered prompt) may point at a resource: a ``resource_link`` content
item, or an embedded ``resource`` whose contents carry their URI. The backend writes its own
URI there (``demo://resource/dynamic/blob/1``), which the router does not serve: clients read
``demo://{namespace}/resource/dynamic/blob/1``. `expose_tool_result` / `expose_prompt_result`
rewrite those URIs to the exposed form with the index's `UriCodec`, and record each one in
`HandedOutUris`, so that a read of it reaches the backend that handed it out, with the
original URI, even when the URI is neither listed nor an instance of a template.

The hot path: a result with no resource content (almost all of them) costs one scan of its
content types and is returned as the same object.

``_meta`` carries no resource URIs the protocol defines for results, so it is passed through.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import mcp_types as types

from mcp_router.naming import UriCodec

_RESOURCE_TYPES = frozenset({"resource_link", "resource"})
DEFAULT_PER_BACKEND = 1024
"""How many handed-out URIs are remembered per backend (least recently handed out go first)."""


@dataclass(frozen=True, slots=True)
class HandedOut:
    """One URI a backend handed out in a result: who, in which group, and its original form."""

    backend: str
    group: str
    original_uri: str


class HandedOutUris:
    """The exposed URIs backends handed out in results, readable through the router.

    Bounded: at most ``per_backend`` URIs per backend, least recently handed out evicted
    first, so a backend that mints a fresh URI per call cannot grow the router's memory.
    """

    def __init__(self, per_backend: int = DEFAULT_PER_BACKEND) -> None:
        self.per_backend = per_backend
        self._by_backend: dict[str, OrderedDict[str, HandedOut]] = {}

    def record(self, backend: str, group: str, exposed_uri: str, original_uri: str) -> None:
        """Remember that ``backend`` handed out ``original_uri`` (exposed as ``exposed_uri``)."""
        seen = self._by_backend.setdefault(backend, OrderedDict())
        seen[exposed_uri] = HandedOut(backend, group, original_uri)
        seen.move_to_end(exposed_uri)
        while len(seen) > self.per_backend:
            seen.popitem(last=False)

    def resolve(self, exposed_uri: str) -> HandedOut | None:
        """The backend side of a handed-out exposed URI (None if none handed it out lately)."""
        for seen in self._by_backend.values():
            found = seen.get(exposed_uri)
            if found is not None:
                return found
        return None

    def forget(self, backend: str) -> None:
        """Drop what ``backend`` handed out (it was removed from the config)."""
        self._by_backend.pop(backend, None)

    def __len__(self) -> int:
        return sum(len(seen) for seen in self._by_backend.values())


class _Exposer:
    """Rewrites URIs of one backend's result and records them."""

    __slots__ = ("backend", "codec", "group", "handed_out", "namespace")

    def __init__(
        self, codec: UriCodec, handed_out: HandedOutUris, backend: str, group: str, namespace: str
    ) -> None:
        self.codec, self.handed_out = codec, handed_out
        self.backend, self.group, self.namespace = backend, group, namespace

    def uri(self, original: str) -> str:
        try:
            exposed = self.codec.encode(self.namespace, original)
        except KeyError:  # the namespace left the index meanwhile (reload): leave it as is
            return original
        self.handed_out.record(self.backend, self.group, exposed, original)
        return exposed

    def content(self, item: types.ContentBlock) -> types.ContentBlock:
        if isinstance(item, types.ResourceLink):
            return item.model_copy(update={"uri": self.uri(str(item.uri))})
        if isinstance(item, types.EmbeddedResource):
            inner = item.resource
            inner = inner.model_copy(update={"uri": self.uri(str(inner.uri))})
            return item.model_copy(update={"resource": inner})
        return item


def _has_resources(content: list[types.ContentBlock]) -> bool:
    return any(getattr(item, "type", None) in _RESOURCE_TYPES for item in content)


def expose_tool_result(
    result: types.CallToolResult,
    codec: UriCodec,
    handed_out: HandedOutUris,
    *,
    backend: str,
    group: str,
    namespace: str,
) -> types.CallToolResult:
    """``result`` with every resource URI in its content in the exposed form (recorded)."""
    content = result.content
    if not content or not _has_resources(content):
        return result
    exposer = _Exposer(codec, handed_out, backend, group, namespace)
    return result.model_copy(update={"content": [exposer.content(c) for c in content]})


def expose_prompt_result(
    result: types.GetPromptResult,
    codec: UriCodec,
    handed_out: HandedOutUris,
    *,
    backend: str,
    group: str,
    namespace: str,
) -> types.GetPromptResult:
    """``result`` with every resource URI in its messages in the exposed form (recorded)."""
    if not any(getattr(m.content, "type", None) in _RESOURCE_TYPES for m in result.messages):
        return result
    exposer = _Exposer(codec, handed_out, backend, group, namespace)
    messages = [
        m.model_copy(update={"content": exposer.content(m.content)})
        if getattr(m.content, "type", None) in _RESOURCE_TYPES
        else m
        for m in result.messages
    ]
    return result.model_copy(update={"messages": messages})


def expose_read_result(
    result: types.ReadResourceResult, codec: UriCodec, exposed: str, original: str, group: str
) -> types.ReadResourceResult:
    """A ``resources/read`` result with its contents' URIs (the backend's own) in exposed form,
    so the client can read each of them again; the same object when nothing changes."""
    if not group or not result.contents:
        return result  # unprefixed: the backend's URIs are the exposed ones
    contents = []
    changed = False
    for item in result.contents:
        own = str(item.uri)
        mine = exposed if own == original else codec.encode(group, own)
        if mine != own:
            item = item.model_copy(update={"uri": mine})
            changed = True
        contents.append(item)
    return result.model_copy(update={"contents": contents}) if changed else result


def expose_tool_definition(tool: types.Tool, codec: UriCodec, namespace: str) -> types.Tool:
    """``tool`` with the UI resource its ``_meta`` names (MCP Apps) in the exposed form.

    An MCP Apps tool points at its interface with ``_meta.ui.resourceUri`` (and, in the first
    drafts, ``_meta["ui/resourceUri"]``): a ``ui://`` resource the backend lists. Through the
    router that resource is listed and read under its exposed URI, so the pointer is rewritten
    the same way; everything else in ``_meta`` passes through. No other ``_meta`` key is
    touched, and a tool without one is returned as the same object.
    """
    meta = tool.meta
    if not meta:
        return tool
    ui = meta.get("ui")
    nested = ui.get("resourceUri") if isinstance(ui, dict) else None
    flat = meta.get("ui/resourceUri")
    if not isinstance(nested, str) and not isinstance(flat, str):
        return tool
    new_meta = dict(meta)
    if isinstance(nested, str) and isinstance(ui, dict):
        new_meta["ui"] = {**ui, "resourceUri": codec.encode(namespace, nested)}
    if isinstance(flat, str):
        new_meta["ui/resourceUri"] = codec.encode(namespace, flat)
    return tool.model_copy(update={"meta": new_meta})
