"""The name codec: exposed names <-> (backend group, original name).

Tool and prompt names
---------------------
A backend *group* is the unit of namespacing: backends that share a namespace form one replica
group (the caller passes the union of their names), and every backend with ``namespace: ""`` is a
group of its own, keyed by the backend name, whose namespace is ``""``.

The exposed name of ``(group, name)`` is ``{namespace}{separator}{name}`` (just ``name`` when the
namespace is ``""`` or prefixing is disabled). Exposed names must match ``^[a-zA-Z0-9_-]{1,64}$``,
the rule Claude and OpenAI clients enforce:

* a valid joined name of at most 64 characters is exposed exactly as is;
* otherwise every run of invalid characters becomes ``_``, the result is cut to 55 characters
  and ``_`` + the first 8 hex digits of ``sha256(f"{namespace}\\x00{name}")`` is appended, so the
  name is stable across processes and distinct originals stay distinct;
* collisions (two different ``(group, name)`` pairs wanting one exposed name) are resolved in
  registration order: the first claimant keeps the name, later ones get a suffix form whose hash
  also covers the group id. Every collision is recorded in :attr:`NameCodec.collisions`; no name is
  ever dropped.

Lookups in both directions are dictionary lookups built once by :meth:`NameCodec.build`; an exposed
name is never split on the separator.

Resource URIs
-------------
:class:`UriCodec` namespaces URIs and URI templates reversibly; see its docstring for the rule.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import quote

__all__ = [
    "MAX_NAME_LENGTH",
    "ROUTER_URI_SCHEME",
    "VALID_NAME_RE",
    "Collision",
    "NameCodec",
    "UriCodec",
]

MAX_NAME_LENGTH = 64
"""Longest exposed tool/prompt name accepted by Claude and OpenAI clients."""

VALID_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""Every exposed tool and prompt name matches this pattern."""

_INVALID_RUN_RE = re.compile(r"[^a-zA-Z0-9_-]+")
_HASH_LEN = 8
_SUFFIX_LEN = _HASH_LEN + 1  # "_" + 8 hex digits
_STEM_LEN = MAX_NAME_LENGTH - _SUFFIX_LEN

ROUTER_URI_SCHEME = "router"
"""Scheme used by :class:`UriCodec` for URIs that have no ``scheme://`` form of their own."""

# RFC 3986 scheme, followed by "://"; the rest may be anything (including newlines).
_HIER_URI_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)


def _short_hash(*parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:_HASH_LEN]


def _with_suffix(joined: str, suffix: str) -> str:
    stem = _INVALID_RUN_RE.sub("_", joined)[:_STEM_LEN]
    return f"{stem}_{suffix}"


@dataclass(frozen=True, slots=True)
class Collision:
    """Two ``(group, original)`` pairs that wanted the same exposed name.

    ``kept_by`` (registered first) keeps ``exposed``; ``renamed`` is exposed as ``renamed_to``.
    Both stay listed in :meth:`NameCodec.items`.
    """

    exposed: str
    kept_by: tuple[str, str]
    renamed: tuple[str, str]
    renamed_to: str

    def describe(self) -> str:
        """A one-line human description, suitable for a log warning."""
        kg, ko = self.kept_by
        rg, ro = self.renamed
        return (
            f"name collision on {self.exposed!r}: {kg}/{ko} keeps it, "
            f"{rg}/{ro} is exposed as {self.renamed_to!r}"
        )


@dataclass(frozen=True, slots=True)
class _Group:
    group_id: str
    namespace: str
    names: tuple[str, ...]


class NameCodec:
    """Bidirectional map between exposed tool/prompt names and ``(group_id, original_name)``.

    Usage: register every group in config order with :meth:`add_group`, call :meth:`build` once,
    then read :meth:`items` (or :meth:`encode` one name). A built codec is immutable; when catalogs
    change the router builds a new one.
    """

    __slots__ = (
        "_built",
        "_by_exposed",
        "_by_original",
        "_collisions",
        "_groups",
        "_order",
        "prefixing",
        "separator",
    )

    def __init__(self, separator: str = "_", prefixing: bool = True) -> None:
        self.separator = separator
        self.prefixing = prefixing
        self._groups: dict[str, _Group] = {}
        self._built = False
        self._by_exposed: Mapping[str, tuple[str, str]] = MappingProxyType({})
        self._by_original: Mapping[tuple[str, str], str] = MappingProxyType({})
        self._order: tuple[str, ...] = ()
        self._collisions: tuple[Collision, ...] = ()

    def add_group(self, group_id: str, namespace: str, names: Iterable[str]) -> None:
        """Register a group (a namespace, or one unprefixed backend) and its original names.

        Groups must be added in config order, which decides who keeps a contested name.
        Duplicate names within a group are ignored (first occurrence keeps its position).
        """
        if self._built:
            raise RuntimeError("NameCodec is immutable once built; create a new codec")
        if group_id in self._groups:
            raise ValueError(f"group {group_id!r} is already registered")
        self._groups[group_id] = _Group(group_id, namespace, tuple(dict.fromkeys(names)))

    def joined_name(self, namespace: str, name: str) -> str:
        """The raw ``{namespace}{separator}{name}`` (before any sanitising)."""
        if not self.prefixing or not namespace:
            return name
        return f"{namespace}{self.separator}{name}"

    def preferred_name(self, namespace: str, name: str) -> str:
        """The exposed name ``(namespace, name)`` gets when nobody else claims it first."""
        joined = self.joined_name(namespace, name)
        if VALID_NAME_RE.match(joined):
            return joined
        return _with_suffix(joined, _short_hash(namespace, name))

    def build(self) -> None:
        """Compute the exposed names of every registered group. Call exactly once."""
        if self._built:
            raise RuntimeError("NameCodec is already built")
        by_exposed: dict[str, tuple[str, str]] = {}
        by_original: dict[tuple[str, str], str] = {}
        order: list[str] = []
        collisions: list[Collision] = []
        for group in self._groups.values():
            for name in group.names:
                key = (group.group_id, name)
                exposed = self.preferred_name(group.namespace, name)
                holder = by_exposed.get(exposed)
                if holder is not None:
                    joined = self.joined_name(group.namespace, name)
                    attempt = 0
                    renamed = exposed
                    while renamed in by_exposed:
                        parts = [group.group_id, group.namespace, name]
                        if attempt:
                            parts.append(str(attempt))
                        renamed = _with_suffix(joined, _short_hash(*parts))
                        attempt += 1
                    collisions.append(Collision(exposed, holder, key, renamed))
                    exposed = renamed
                by_exposed[exposed] = key
                by_original[key] = exposed
                order.append(exposed)
        self._by_exposed = MappingProxyType(by_exposed)
        self._by_original = MappingProxyType(by_original)
        self._order = tuple(order)
        self._collisions = tuple(collisions)
        self._built = True

    @property
    def collisions(self) -> list[Collision]:
        """Every collision resolved by :meth:`build`, in resolution order."""
        return list(self._collisions)

    def encode(self, group_id: str, original: str) -> str:
        """The exposed name of ``original`` in ``group_id``; ``KeyError`` if not registered."""
        try:
            return self._by_original[(group_id, original)]
        except KeyError:
            raise KeyError(f"unknown name {original!r} in group {group_id!r}") from None

    def items(self) -> list[tuple[str, str, str]]:
        """``(exposed, group_id, original)`` for every name, in registration order."""
        return [(e, *self._by_exposed[e]) for e in self._order]

    def __repr__(self) -> str:
        return (
            f"NameCodec(separator={self.separator!r}, prefixing={self.prefixing}, "
            f"groups={len(self._groups)}, names={len(self._order)}, built={self._built})"
        )


class UriCodec:
    """Reversible namespacing of resource URIs and URI templates.

    Rule (``ns`` is the namespace, percent-encoded with :func:`urllib.parse.quote` so that it is a
    single path-free URI segment):

    * namespace ``""`` or prefixing disabled: the URI is unchanged;
    * ``scheme://rest`` with a scheme other than ``router``: ``scheme://{ns}/rest``
      (``test://static-text`` -> ``test://ns/static-text``,
      ``file:///tmp/a`` -> ``file://ns//tmp/a``, ``test://items/{id}`` -> ``test://ns/items/{id}``);
    * anything else (no ``://``, e.g. ``urn:x:y``, or a ``router://`` URI of the backend's own):
      ``router://{ns}/`` followed by the original URI verbatim
      (``urn:x:y`` -> ``router://ns/urn:x:y``).

    The two forms never overlap (the first one never yields the ``router`` scheme), so encoding is
    injective and :meth:`decode` inverts it by prefix inspection. Because the original text after
    the namespace segment is kept verbatim, decoding also works for concrete instances of templates
    that were never listed (``test://ns/items/42`` -> ``("ns", "test://items/42")``).

    Decode precedence: a URI in a namespaced form whose namespace segment is a known namespace
    decodes to that namespace; otherwise, if ``""`` is a known namespace (some backend is
    unprefixed) it decodes to ``("", uri)``; otherwise it is unknown (``None``). With prefixing
    disabled every URI decodes to ``("", uri)`` and the caller resolves the owner by catalog lookup.
    """

    __slots__ = ("_by_segment", "_namespaces", "_segment", "has_unprefixed", "prefixing")

    def __init__(self, namespaces: Iterable[str], prefixing: bool = True) -> None:
        self.prefixing = prefixing
        self._namespaces = frozenset(namespaces)
        self.has_unprefixed = "" in self._namespaces
        self._segment: Mapping[str, str] = MappingProxyType(
            {ns: quote(ns, safe="") for ns in self._namespaces if ns}
        )
        self._by_segment: Mapping[str, str] = MappingProxyType(
            {seg: ns for ns, seg in self._segment.items()}
        )

    @property
    def namespaces(self) -> frozenset[str]:
        """The namespaces this codec knows (``""`` included if a backend is unprefixed)."""
        return self._namespaces

    def encode(self, namespace: str, uri: str) -> str:
        """The exposed form of a URI or URI template served in ``namespace``.

        ``KeyError`` if ``namespace`` is non-empty and was not given to the constructor.
        """
        if not self.prefixing or not namespace:
            return uri
        segment = self._segment.get(namespace)
        if segment is None:
            raise KeyError(f"unknown namespace {namespace!r}")
        m = _HIER_URI_RE.match(uri)
        if m is not None and m.group(1).lower() != ROUTER_URI_SCHEME:
            return f"{m.group(1)}://{segment}/{m.group(2)}"
        return f"{ROUTER_URI_SCHEME}://{segment}/{uri}"

    def decode(self, exposed_uri: str) -> tuple[str, str] | None:
        """``(namespace, original_uri)`` for an exposed URI, or ``None`` if no backend owns it."""
        if not self.prefixing:
            return ("", exposed_uri)
        m = _HIER_URI_RE.match(exposed_uri)
        if m is not None:
            scheme, rest = m.group(1), m.group(2)
            segment, slash, tail = rest.partition("/")
            namespace = self._by_segment.get(segment) if slash else None
            if namespace is not None:
                if scheme.lower() == ROUTER_URI_SCHEME:
                    return (namespace, tail)
                return (namespace, f"{scheme}://{tail}")
        if self.has_unprefixed:
            return ("", exposed_uri)
        return None

    def __repr__(self) -> str:
        return f"UriCodec(namespaces={sorted(self._namespaces)!r}, prefixing={self.prefixing})"
