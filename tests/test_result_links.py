"""Resource URIs handed out in results point at resources a client can read through the router.

server-everything's ``get-resource-links`` / ``get-resource-reference`` return its own URIs
(``demo://resource/dynamic/blob/1``); through the router they must come back in the exposed
form (``demo://every/resource/dynamic/blob/1``) and read the same as a direct read of the
original. ``tests/servers/links.py`` hands out ``mem://notes/...`` URIs that it neither lists
nor templates: reading the rewritten URI must still reach it, with the original URI.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from mcp_router.backends.manager import AggregatedIndex
from mcp_router.links import HandedOutUris, expose_tool_result
from mcp_router.naming import UriCodec
from support import EVERYTHING, PYTHON, SERVERS, run_router, write_config

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        not EVERYTHING.exists(), reason="run `npm ci` for server-everything (package.json)"
    ),
]

NS = "every"
MEMO = "memo"
CREATED = re.compile(r" created at .*$")  # server-everything stamps dynamic reads with a time


@pytest.fixture(scope="module")
def router_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A router (HTTP front) before server-everything and the links server, both over stdio."""
    config = write_config(
        tmp_path_factory.mktemp("links") / "backends.yaml",
        [
            {"name": NS, "command": str(EVERYTHING), "args": ["stdio"]},
            {
                "name": MEMO,
                "command": PYTHON,
                "args": [str(SERVERS / "links.py"), "--transport", "stdio"],
            },
        ],
    )
    with run_router(config, timeout=60) as router:
        base = router.base
        yield f"{base}/mcp"


MODES = ["legacy", "2026-07-28"]


@contextlib.asynccontextmanager
async def clients(router_url: str, mode: str) -> AsyncIterator[tuple[Client, Client]]:
    """A client through the router (in era ``mode``) and one straight to server-everything
    (both declaring nothing)."""
    params = StdioServerParameters(command=str(EVERYTHING), args=["stdio"])
    async with Client(router_url, mode=mode) as routed, Client(params, mode="legacy") as direct:
        yield routed, direct


def exposed(uri: str, ns: str = NS) -> str:
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://{ns}/{rest}"


def dump(model: Any) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)  # type: ignore[no-any-return]


def text_of(contents: types.TextResourceContents | types.BlobResourceContents) -> str:
    if isinstance(contents, types.BlobResourceContents):
        return CREATED.sub("", base64.b64decode(contents.blob).decode())
    return CREATED.sub("", contents.text)


@pytest.mark.parametrize("mode", MODES)
async def test_resource_links_come_back_exposed_and_read_like_the_direct_originals(
    router_url: str, mode: str
) -> None:
    async with clients(router_url, mode) as (routed, direct):
        await _links_match(routed, direct)


async def _links_match(routed: Client, direct: Client) -> None:
    args = {"count": 4}
    got = await routed.call_tool(f"{NS}_get-resource-links", args)
    want = await direct.call_tool("get-resource-links", args)
    routed_links = [c for c in got.content if isinstance(c, types.ResourceLink)]
    direct_links = [c for c in want.content if isinstance(c, types.ResourceLink)]
    assert len(direct_links) == 4 and len(routed_links) == 4
    for mine, theirs in zip(routed_links, direct_links, strict=True):
        assert mine.uri == exposed(theirs.uri), "a link must name the exposed URI"
        assert {**dump(mine), "uri": theirs.uri} == dump(theirs)  # everything else verbatim
        r_read = await routed.read_resource(mine.uri)
        d_read = await direct.read_resource(theirs.uri)
        assert [text_of(c) for c in r_read.contents] == [text_of(c) for c in d_read.contents]
        assert r_read.contents[0].mime_type == d_read.contents[0].mime_type
    # the non-resource content is untouched
    assert [dump(c) for c in got.content if c.type == "text"] == [
        dump(c) for c in want.content if c.type == "text"
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_embedded_resource_reference_comes_back_exposed_and_readable(
    router_url: str, mode: str
) -> None:
    async with clients(router_url, mode) as (routed, direct):
        await _references_match(routed, direct)


async def _references_match(routed: Client, direct: Client) -> None:
    for kind, ident in (("Text", 5), ("Blob", 6)):
        args = {"resourceType": kind, "resourceId": ident}
        got = await routed.call_tool(f"{NS}_get-resource-reference", args)
        want = await direct.call_tool("get-resource-reference", args)
        mine = next(c for c in got.content if isinstance(c, types.EmbeddedResource))
        theirs = next(c for c in want.content if isinstance(c, types.EmbeddedResource))
        assert mine.resource.uri == exposed(theirs.resource.uri) != theirs.resource.uri
        assert text_of(mine.resource) == text_of(theirs.resource)
        read = await routed.read_resource(mine.resource.uri)
        assert text_of(read.contents[0]) == text_of(theirs.resource)


@pytest.mark.parametrize("mode", MODES)
async def test_link_to_an_unlisted_untemplated_resource_reads_the_backend_original_uri(
    router_url: str, mode: str
) -> None:
    async with Client(router_url, mode=mode) as routed:
        await _unlisted_link_reads(routed)


async def _unlisted_link_reads(routed: Client) -> None:
    result = await routed.call_tool(f"{MEMO}_make_note", {"name": "n1"})
    assert not result.is_error, result.content
    link = next(c for c in result.content if isinstance(c, types.ResourceLink))
    embedded = next(c for c in result.content if isinstance(c, types.EmbeddedResource))
    original = "mem://notes/n1"
    assert link.uri == embedded.resource.uri == exposed(original, MEMO)
    listed = {r.uri for r in (await routed.list_resources()).resources}
    templates = [
        t.uri_template for t in (await routed.list_resource_templates()).resource_templates
    ]
    assert link.uri not in listed and not any(t.startswith("mem://") for t in templates)
    read = await routed.read_resource(link.uri)
    item = read.contents[0]
    assert isinstance(item, types.TextResourceContents)
    assert item.text == f"note at {original}", "the backend must get its own, original URI"


@pytest.mark.parametrize("mode", MODES)
async def test_prompt_embedded_resource_comes_back_exposed_and_readable(
    router_url: str, mode: str
) -> None:
    async with Client(router_url, mode=mode) as routed:
        await _prompt_link_reads(routed)


async def _prompt_link_reads(routed: Client) -> None:
    prompt = await routed.get_prompt(f"{MEMO}_note_prompt", {"name": "p7"})
    content = prompt.messages[0].content
    assert isinstance(content, types.EmbeddedResource)
    assert content.resource.uri == exposed("mem://notes/p7", MEMO)
    read = await routed.read_resource(content.resource.uri)
    assert read.contents[0].text == "note at mem://notes/p7"  # type: ignore[union-attr]


def test_handed_out_uris_are_bounded_per_backend_and_resolve_to_the_backend_that_gave_them() -> (
    None
):
    handed = HandedOutUris(per_backend=3)
    for i in range(5):
        handed.record("a", "grp", f"x://grp/{i}", f"x://{i}")
    handed.record("b", "grp", "x://grp/b", "x://b")
    assert len(handed) == 4  # 3 of a's (the latest), 1 of b's
    assert handed.resolve("x://grp/0") is None and handed.resolve("x://grp/1") is None
    index = AggregatedIndex(
        uri_codec=UriCodec(["grp"]), group_of_namespace={"grp": "grp"}, handed_out=handed
    )
    resolved = index.resolve_uri("x://grp/4")
    assert resolved is not None
    assert (resolved.group, resolved.original_uri, resolved.owners) == ("grp", "x://4", ("a",))
    # neither handed out, listed nor templated: refused (a backend must opt in to unlisted URIs)
    assert index.resolve_uri("x://grp/9") is None


def test_results_without_resource_content_are_returned_as_the_same_object() -> None:
    result = types.CallToolResult(content=[types.TextContent(type="text", text="hi")])
    handed = HandedOutUris()
    same = expose_tool_result(
        result, UriCodec(["ns"]), handed, backend="b", group="ns", namespace="ns"
    )
    assert same is result and len(handed) == 0
