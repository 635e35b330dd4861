"""Large catalogs page with cursors when `routing.list_page_size` is set."""

from __future__ import annotations

from pathlib import Path

import mcp_types as types
import pytest

from support import MANAGEMENT_TOOLS, in_process_router, router_client, write_config
from test_faults import stdio_backend

pytestmark = pytest.mark.timeout(60)


async def test_tools_list_pages_with_cursors_and_the_pages_add_up_to_the_catalog(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "paged.yaml", [stdio_backend("one")], routing={"list_page_size": 2}
    )
    async with in_process_router(config) as router, router_client(router) as client:
        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await client.session.list_tools(params=params)
            pages.append([t.name for t in page.tools])
            cursor = page.next_cursor
            if not cursor:
                break
        assert all(len(p) <= 2 for p in pages) and len(pages) > 1
        names = [n for p in pages for n in p]
        assert len(names) == len(set(names))  # no tool on two pages
        assert set(names) == {*router.manager.index.tools, *MANAGEMENT_TOOLS}
