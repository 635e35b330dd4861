"""Tool discovery for large catalogs (``routing.tool_discovery: search``).

Instead of listing hundreds of backend tools, the router lists only the tools matching
``routing.pinned_tools`` plus two tools of its own:

* ``router_search_tools(query, limit)``: BM25 ranking over each tool's exposed name, title,
  description and parameter names; returns exposed names, descriptions and input schemas;
* ``router_call_tool(name, arguments)``: calls a tool by exposed name through the same
  :class:`~mcp_router.gateway.entry.CallEntry` as a direct ``tools/call`` (caller context included).

Unlisted tools stay callable directly by their exposed name (as with FastMCP's own search
transform); only the listing changes.

FastMCP's ``BM25SearchTransform`` is not used: it re-hashes the whole catalog on every search,
pins exact names only (not globs), has a fixed result count, and sees the management tools too.
Here the search index is built once per :class:`AggregatedIndex` snapshot (the index is
immutable and replaced on every catalog change), like every other view of the catalog.
"""

from __future__ import annotations

import fnmatch
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server.context import Context
from fastmcp.tools.base import ToolResult
from mcp.types import ToolAnnotations
from pydantic import Field

from mcp_router.backends.manager import AggregatedIndex, BackendManager, ExposedTool
from mcp_router.gateway.components import tool_result
from mcp_router.gateway.entry import CallEntry

__all__ = [
    "DISCOVERY_INSTRUCTIONS",
    "MAX_LIMIT",
    "ToolSearchIndex",
    "pinned_matcher",
    "register_discovery_tools",
    "tokenize",
]

MAX_LIMIT = 50
"""Most results one ``router_search_tools`` call returns."""

DISCOVERY_INSTRUCTIONS = (
    " This router runs in tool-discovery mode: most backend tools are not listed. Call "
    "`router_search_tools` with a few keywords describing the task to find tools (it returns "
    "their names and input schemas), then call one with `router_call_tool`."
)

_WORD_RE = re.compile(r"[^\W_]+")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# A tool's name says most about what it does: its tokens count this many times.
_NAME_WEIGHT = 3
_K1 = 1.2
_B = 0.75


def _stem(token: str) -> str:
    """A very light English stemmer, so ``users``/``user`` and ``queries``/``query`` meet."""
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    """Split into lower-case word tokens: ``snake_case``, ``camelCase``, punctuation, digits."""
    tokens: list[str] = []
    for word in _WORD_RE.findall(unicodedata.normalize("NFKC", text)):
        for part in _CAMEL_RE.split(word):
            part = part.casefold()
            if part:
                tokens.append(_stem(part))
    return tokens


def _schema_parameter_names(schema: Any) -> list[str]:
    """Top-level and nested property names of a JSON schema (bounded depth)."""
    names: list[str] = []

    def walk(node: Any, depth: int) -> None:
        if depth > 3 or not isinstance(node, dict):
            return
        props = node.get("properties")
        if isinstance(props, dict):
            for key, sub in props.items():
                names.append(str(key))
                walk(sub, depth + 1)
        items = node.get("items")
        if isinstance(items, dict):
            walk(items, depth + 1)

    walk(schema, 0)
    return names


def document_tokens(entry: ExposedTool) -> list[str]:
    """The searchable tokens of one tool: name (weighted), title, description, parameters."""
    tool = entry.tool
    name_tokens = tokenize(entry.exposed_name)
    tokens = name_tokens * _NAME_WEIGHT
    if tool.title:
        tokens += tokenize(tool.title)
    if tool.description:
        tokens += tokenize(tool.description)
    for param in _schema_parameter_names(tool.input_schema):
        tokens += tokenize(param)
    return tokens


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One ranked search result."""

    tool: ExposedTool
    score: float


class ToolSearchIndex:
    """A BM25 (Okapi) index over the tools of one :class:`AggregatedIndex` snapshot."""

    def __init__(self, tools: Iterable[ExposedTool]) -> None:
        self.tools: list[ExposedTool] = list(tools)
        self._tf: list[Counter[str]] = []
        self._length: list[int] = []
        df: Counter[str] = Counter()
        for entry in self.tools:
            counts = Counter(document_tokens(entry))
            self._tf.append(counts)
            self._length.append(sum(counts.values()))
            df.update(counts.keys())
        n = len(self.tools)
        self._avg = (sum(self._length) / n) if n else 0.0
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def search(
        self, query: str, limit: int = 10, visible: Callable[[str], bool] | None = None
    ) -> list[SearchHit]:
        """The best ``limit`` tools for ``query``, best first; tools matching nothing are left out.

        Ties are broken by catalog order, so results are deterministic. ``visible`` (the
        client's policies) leaves out tools the client may not see, before the limit.
        """
        terms = [t for t in dict.fromkeys(tokenize(query)) if t in self._idf]
        if not terms or limit <= 0:
            return []
        scored: list[tuple[float, int]] = []
        for i, tf in enumerate(self._tf):
            if visible is not None and not visible(self.tools[i].exposed_name):
                continue
            score = 0.0
            norm = _K1 * (1 - _B + _B * self._length[i] / self._avg) if self._avg else _K1
            for term in terms:
                f = tf.get(term)
                if f:
                    score += self._idf[term] * f * (_K1 + 1) / (f + norm)
            if score > 0:
                scored.append((score, i))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [SearchHit(self.tools[i], round(s, 4)) for s, i in scored[:limit]]


def pinned_matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A predicate: does an exposed tool name match one of the ``pinned_tools`` globs?"""
    compiled = [re.compile(fnmatch.translate(p)) for p in patterns]
    return lambda name: any(rx.match(name) for rx in compiled)


class _Searcher:
    """Keeps one search index per index snapshot (rebuilt only when the catalog changes)."""

    def __init__(self, manager: BackendManager) -> None:
        self._manager = manager
        self._snapshot: AggregatedIndex | None = None
        self._index = ToolSearchIndex(())

    def current(self) -> ToolSearchIndex:
        snapshot = self._manager.index
        if snapshot is not self._snapshot:
            self._index = ToolSearchIndex(snapshot.tools.values())
            self._snapshot = snapshot
        return self._index


_READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def register_discovery_tools(
    server: FastMCP,
    manager: BackendManager,
    entry: CallEntry,
    visible: Callable[[str], bool] | None = None,
) -> None:
    """Add ``router_search_tools`` and ``router_call_tool`` to the server.

    ``visible`` (governance) says whether the calling client may see a tool: search never
    returns nor counts one it may not."""
    searcher = _Searcher(manager)

    @server.tool(name="router_search_tools", annotations=_READ_ONLY)
    async def router_search_tools(
        query: Annotated[
            str, Field(description="Keywords describing what you want to do, e.g. 'create issue'")
        ],
        limit: Annotated[
            int, Field(ge=1, le=MAX_LIMIT, description="Maximum number of tools to return")
        ] = 10,
    ) -> dict[str, Any]:
        """Search every tool of every backend behind this router (most are not listed).

        Returns the best-matching tools, best first, each with its exposed name, description
        and JSON input schema. Call a result with `router_call_tool(name, arguments)` (or
        directly by its name)."""
        index = searcher.current()
        hits = index.search(query, limit, visible)
        total = len(index.tools)
        if visible is not None:
            total = sum(1 for t in index.tools if visible(t.exposed_name))
        return {
            "query": query,
            "total_tools": total,
            "results": [
                {
                    "name": hit.tool.exposed_name,
                    "description": hit.tool.tool.description or "",
                    "input_schema": hit.tool.tool.input_schema,
                    "score": hit.score,
                }
                for hit in hits
            ],
        }

    @server.tool(name="router_call_tool")
    async def router_call_tool(
        name: Annotated[
            str, Field(description="Exposed tool name, as returned by router_search_tools")
        ],
        arguments: Annotated[
            dict[str, Any] | None,
            Field(description="Arguments for the tool, matching its input_schema"),
        ] = None,
        ctx: Context | None = None,
    ) -> ToolResult:
        """Call any backend tool by its exposed name (as found with `router_search_tools`).

        The call is routed exactly like a direct call of that tool (failover, retries,
        circuit breakers) and its result is returned unchanged."""
        if name not in manager.index.tools:
            raise ToolError(
                f"unknown tool '{name}': use router_search_tools to find exposed tool names"
            )
        # The same entry as a direct call: the caller's context (progress, sampling,
        # elicitation, roots, per-client session) and the backend's result unchanged.
        return tool_result(await entry.call_tool(ctx, name, arguments or {}))
