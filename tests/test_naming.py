"""Tests for the name and URI codecs."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_router.naming import Collision, NameCodec, UriCodec

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def build(
    *groups: tuple[str, str, list[str]], separator: str = "_", prefixing: bool = True
) -> NameCodec:
    """A built codec over ``(group_id, namespace, names)`` triples, as the manager builds one."""
    codec = NameCodec(separator=separator, prefixing=prefixing)
    for group_id, namespace, names in groups:
        codec.add_group(group_id, namespace, names)
    codec.build()
    return codec


def names_of(codec: NameCodec) -> list[str]:
    """The exposed names in registration order (what the aggregated index lists)."""
    return [name for name, _group, _original in codec.items()]


def owner(codec: NameCodec, name: str) -> tuple[str, str] | None:
    """``(group_id, original)`` behind an exposed name, looked up as the index does."""
    return {e: (g, o) for e, g, o in codec.items()}.get(name)


def h8(namespace: str, name: str) -> str:
    return hashlib.sha256(f"{namespace}\x00{name}".encode()).hexdigest()[:8]


# --- NameCodec -----------------------------------------------------------------------------


def test_plain_names_are_prefixed() -> None:
    codec = build(("db", "db", ["fetch_user", "query"]), ("files", "fs", ["read"]))
    assert names_of(codec) == ["db_fetch_user", "db_query", "fs_read"]
    assert codec.encode("db", "fetch_user") == "db_fetch_user"
    assert owner(codec, "db_fetch_user") == ("db", "fetch_user")
    assert owner(codec, "fs_read") == ("files", "read")
    assert codec.collisions == []
    assert codec.items()[2] == ("fs_read", "files", "read")


def test_empty_namespace_keeps_names() -> None:
    codec = build(("everything", "", ["echo", "add"]), ("db", "db", ["echo"]))
    assert names_of(codec) == ["echo", "add", "db_echo"]
    assert owner(codec, "echo") == ("everything", "echo")
    assert owner(codec, "db_echo") == ("db", "echo")


def test_prefixing_disabled() -> None:
    codec = build(("db", "db", ["query"]), ("fs", "fs", ["read"]), prefixing=False)
    assert names_of(codec) == ["query", "read"]
    assert owner(codec, "query") == ("db", "query")


@pytest.mark.parametrize(("sep", "expected"), [("__", "db__query"), ("-", "db-query")])
def test_custom_separator(sep: str, expected: str) -> None:
    codec = build(("db", "db", ["query"]), separator=sep)
    assert codec.encode("db", "query") == expected
    assert owner(codec, expected) == ("db", "query")


def test_invalid_separator_is_sanitised() -> None:
    codec = build(("db", "db", ["query"]), separator=".")
    exposed = codec.encode("db", "query")
    assert exposed == f"db_query_{h8('db', 'query')}"
    assert owner(codec, exposed) == ("db", "query")


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("read.file", "ns_read_file"),
        ("a/b:c", "ns_a_b_c"),
        ("two  spaces", "ns_two_spaces"),
        ("café", "ns_caf_"),
        ("日本語", "ns__"),
    ],
)
def test_invalid_chars_sanitised_with_hash(name: str, stem: str) -> None:
    codec = build(("g", "ns", [name]))
    exposed = codec.encode("g", name)
    assert exposed == f"{stem}_{h8('ns', name)}"
    assert VALID.match(exposed)
    assert owner(codec, exposed) == ("g", name)


def test_empty_name_without_namespace_is_valid() -> None:
    codec = build(("g", "", [""]))
    exposed = codec.encode("g", "")
    assert exposed == f"_{h8('', '')}"
    assert owner(codec, exposed) == ("g", "")
    # with a namespace the joined name "ns_" is already valid and kept as is
    assert build(("g", "ns", [""])).encode("g", "") == "ns_"


def test_valid_name_of_exactly_64_is_untouched() -> None:
    name = "x" * 61
    codec = build(("g", "ns", [name]))
    assert codec.encode("g", name) == f"ns_{name}"
    assert len(codec.encode("g", name)) == 64


def test_long_names_shortened_deterministically() -> None:
    name = "very_long_tool_name_" * 5
    a = build(("g", "namespace", [name])).encode("g", name)
    b = build(("other", "namespace", ["x", name])).encode("other", name)
    assert a == b  # stable across codec instances (and group ids without collisions)
    assert len(a) == 64
    assert VALID.match(a)
    assert a == f"namespace_{name}"[:55] + "_" + h8("namespace", name)
    # a different long name with the same 55-char stem gets a different exposed name
    c = build(("g", "namespace", [name + "2"])).encode("g", name + "2")
    assert c != a and c[:55] == a[:55]


def test_collision_between_unprefixed_groups() -> None:
    codec = build(("alpha", "", ["echo", "ping"]), ("beta", "", ["echo"]))
    kept, renamed = "echo", codec.encode("beta", "echo")
    assert codec.encode("alpha", "echo") == kept
    assert renamed != kept and renamed.startswith("echo_") and VALID.match(renamed)
    assert owner(codec, kept) == ("alpha", "echo")
    assert owner(codec, renamed) == ("beta", "echo")
    assert codec.collisions == [Collision("echo", ("alpha", "echo"), ("beta", "echo"), renamed)]
    assert "alpha/echo keeps it" in codec.collisions[0].describe()
    # the winner follows registration order
    swapped = build(("beta", "", ["echo"]), ("alpha", "", ["echo", "ping"]))
    assert owner(swapped, "echo") == ("beta", "echo")


def test_collision_of_sanitised_names_in_unprefixed_groups() -> None:
    codec = build(("alpha", "", ["a.b"]), ("beta", "", ["a.b"]))
    names = names_of(codec)
    assert len(set(names)) == 2
    assert {owner(codec, n) for n in names} == {("alpha", "a.b"), ("beta", "a.b")}
    assert len(codec.collisions) == 1


def test_collision_across_separator_boundary() -> None:
    codec = build(("a", "a", ["b_c"]), ("a_b", "a_b", ["c"]))
    assert codec.encode("a", "b_c") == "a_b_c"
    other = codec.encode("a_b", "c")
    assert other != "a_b_c" and VALID.match(other)
    assert owner(codec, "a_b_c") == ("a", "b_c")
    assert owner(codec, other) == ("a_b", "c")
    assert [c.exposed for c in codec.collisions] == ["a_b_c"]


def test_collision_with_long_names_stays_within_64() -> None:
    name = "n" * 80
    codec = build(("x", "", [name]), ("y", "", [name]), ("z", "", [name]))
    names = names_of(codec)
    assert len(set(names)) == 3
    assert all(VALID.match(n) for n in names)
    assert len(codec.collisions) == 2


def test_duplicate_names_within_group_are_merged() -> None:
    codec = build(("g", "ns", ["a", "b", "a"]))
    assert names_of(codec) == ["ns_a", "ns_b"]


def test_encoding_an_unregistered_name_is_a_key_error() -> None:
    codec = build(("db", "db", ["query"]))
    with pytest.raises(KeyError):
        codec.encode("db", "nope")


def test_immutable_once_built() -> None:
    codec = build(("db", "db", ["query"]))
    with pytest.raises(RuntimeError):
        codec.add_group("x", "x", ["y"])
    with pytest.raises(RuntimeError):
        codec.build()
    fresh = NameCodec()
    fresh.add_group("g", "g", [])
    with pytest.raises(ValueError):
        fresh.add_group("g", "g", ["again"])


name_text = st.text(min_size=0, max_size=90)
groups_strategy = st.lists(
    st.tuples(st.sampled_from(["", "db", "fs", "a_b", "ns.dot", "ünï", "x" * 70]), name_text),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(pairs=groups_strategy, separator=st.sampled_from(["_", "__", "-", "."]))
def test_round_trip_property(pairs: list[tuple[str, str]], separator: str) -> None:
    # Every distinct namespace is one group; "" groups are split per "backend" to force clashes.
    grouped: dict[str, tuple[str, list[str]]] = {}
    for index, (namespace, name) in enumerate(pairs):
        group_id = f"unprefixed-{index % 3}" if namespace == "" else namespace
        grouped.setdefault(group_id, (namespace, []))[1].append(name)
    codec = NameCodec(separator=separator)
    for group_id, (namespace, names) in grouped.items():
        codec.add_group(group_id, namespace, names)
    codec.build()

    names_exposed = names_of(codec)
    assert len(names_exposed) == len(set(names_exposed))
    for name in names_exposed:
        assert VALID.match(name), name
    for group_id, (_namespace, names) in grouped.items():
        for name in names:
            assert owner(codec, codec.encode(group_id, name)) == (group_id, name)

    # Deterministic: an identical codec produces identical names.
    again = build(*((g, ns, names) for g, (ns, names) in grouped.items()), separator=separator)
    assert names_of(again) == names_exposed


# --- UriCodec ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "exposed"),
    [
        ("test://static-text", "test://ns/static-text"),
        ("file:///tmp/a", "file://ns//tmp/a"),
        ("file:///tmp/a b", "file://ns//tmp/a b"),
        ("https://x/y?q=1", "https://ns/x/y?q=1"),
        ("urn:x:y", "router://ns/urn:x:y"),
        ("router://own/thing", "router://ns/router://own/thing"),
        ("test://items/{id}", "test://ns/items/{id}"),
        ("file:///{+path}", "file://ns//{+path}"),
        ("{uri}", "router://ns/{uri}"),
        ("test://", "test://ns/"),
    ],
)
def test_uri_round_trip(uri: str, exposed: str) -> None:
    codec = UriCodec({"ns", "other"})
    assert codec.encode("ns", uri) == exposed
    assert codec.decode(exposed) == ("ns", uri)


def test_uri_template_concrete_instances_decode() -> None:
    codec = UriCodec({"ns"})
    template = codec.encode("ns", "test://items/{id}")
    concrete = template.replace("{id}", "42")
    assert codec.decode(concrete) == ("ns", "test://items/42")
    whole = codec.encode("ns", "{uri}").replace("{uri}", "urn:isbn:123")
    assert codec.decode(whole) == ("ns", "urn:isbn:123")


def test_uri_unprefixed_and_disabled() -> None:
    codec = UriCodec({"", "ns"})
    assert codec.encode("", "test://static-text") == "test://static-text"
    assert codec.decode("test://static-text") == ("", "test://static-text")
    # a namespaced form takes precedence over the unprefixed reading
    assert codec.decode("test://ns/x") == ("ns", "test://x")

    disabled = UriCodec({"ns"}, prefixing=False)
    assert disabled.encode("ns", "test://a") == "test://a"
    assert disabled.decode("test://a") == ("", "test://a")


def test_uri_unknown_namespace() -> None:
    codec = UriCodec({"ns"})
    assert codec.decode("test://zz/static-text") is None
    assert codec.decode("router://zz/urn:x") is None
    assert codec.decode("urn:x:y") is None
    assert codec.decode("test://ns") is None  # no "/" after the namespace segment
    with pytest.raises(KeyError):
        codec.encode("zz", "test://a")


def test_uri_namespace_with_reserved_chars_round_trips() -> None:
    codec = UriCodec({"a/b", "a"})
    exposed = codec.encode("a/b", "test://x")
    assert exposed == "test://a%2Fb/x"
    assert codec.decode(exposed) == ("a/b", "test://x")
    assert codec.decode(codec.encode("a", "test://b/x")) == ("a", "test://b/x")


@settings(max_examples=200, deadline=None)
@given(
    namespace=st.sampled_from(["ns", "a_b", "a/b", "ü", "router"]),
    uri=st.one_of(
        st.text(max_size=40),
        st.builds(
            lambda s, r: f"{s}://{r}",
            st.from_regex(r"[a-z][a-z0-9+.-]{0,6}", fullmatch=True),
            st.text(max_size=30),
        ),
    ),
)
def test_uri_round_trip_property(namespace: str, uri: str) -> None:
    codec = UriCodec({"ns", "a_b", "a/b", "ü", "router"})
    assert codec.decode(codec.encode(namespace, uri)) == (namespace, uri)
