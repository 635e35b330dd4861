"""MCP Apps through the router: a tool's ``_meta.ui.resourceUri`` names its interface resource
in the exposed form, and reading that URI returns the backend's resource.

Without the rewrite a namespaced backend's app would point at ``ui://charts/view.html``, a URI
the router does not serve, and the client could not render the tool's interface.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import PYTHON, SERVERS, in_process_router, router_client, write_config

pytestmark = pytest.mark.timeout(90)

ORIGINAL = "ui://charts/view.html"
EXPOSED = "ui://charts_ns/charts/view.html"


def _config(tmp_path: Path, namespace: str | None) -> Path:
    backend: dict[str, object] = {
        "name": "charts",
        "command": PYTHON,
        "args": [str(SERVERS / "apps.py")],
        "connect_timeout_seconds": 60,
    }
    if namespace is not None:
        backend["namespace"] = namespace
    return write_config(tmp_path / "apps.yaml", [backend])


async def test_app_tool_points_at_its_exposed_ui_resource_and_it_reads(tmp_path: Path) -> None:
    async with (
        in_process_router(_config(tmp_path, "charts_ns")) as router,
        router_client(router) as c,
    ):
        tools = {t.name: t for t in (await c.list_tools()).tools}
        meta = tools["charts_ns_show_chart"].meta
        assert meta is not None
        assert meta["ui"] == {"resourceUri": EXPOSED, "prefersBorder": True}
        assert meta["ui/resourceUri"] == EXPOSED
        assert meta["vendor/tag"] == "ui://not-a-pointer"  # other keys pass through untouched
        listed = {str(r.uri) for r in (await c.list_resources()).resources}
        assert EXPOSED in listed and ORIGINAL not in listed
        read = await c.read_resource(meta["ui"]["resourceUri"])
        assert read.contents[0].text.startswith("<!doctype html>")  # type: ignore[union-attr]


async def test_unprefixed_app_keeps_its_own_ui_uri(tmp_path: Path) -> None:
    async with in_process_router(_config(tmp_path, "")) as router, router_client(router) as c:
        meta = {t.name: t for t in (await c.list_tools()).tools}["show_chart"].meta
        assert meta is not None and meta["ui"]["resourceUri"] == ORIGINAL
        read = await c.read_resource(ORIGINAL)
        assert read.contents[0].text.startswith("<!doctype html>")  # type: ignore[union-attr]
