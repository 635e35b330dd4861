"""Per-backend tool shaping: include/exclude globs, renames and description overrides.

Shaping is applied while the aggregated index is built (``build_index``), before names go
through the :class:`~mcp_router.naming.NameCodec`. So a renamed tool is namespaced, validated
and collision-checked like any other name, a filtered tool is absent from every view of the
index (tools/list, tools/call, routing info, ``check``, discovery search) and calling it gives
the ordinary unknown-tool error, and the router still calls the backend with the original name.

FastMCP's tool transforms (``fastmcp.tools.tool_transform``) are not used: they wrap one
FastMCP component at a time after the router has named it, so a rename there would bypass the
name codec (the ``^[a-zA-Z0-9_-]{1,64}$`` rule and collision handling) and a hidden tool would
still be in the index that routing and management read.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import mcp_types as types

from mcp_router.config.models import ToolShapingConfig

__all__ = ["ShapedTool", "is_exposed", "shape_tools"]

logger = logging.getLogger("mcp_router.shaping")


@dataclass(frozen=True, slots=True)
class ShapedTool:
    """One backend tool after shaping.

    ``name`` is the name to namespace (the rename, or the original name); ``original`` is the
    name the backend knows; ``tool`` is the backend definition with the description override
    applied (its ``name`` is still the original).
    """

    name: str
    original: str
    tool: types.Tool


def is_exposed(shaping: ToolShapingConfig, original: str) -> bool:
    """Whether the include/exclude globs let the tool called ``original`` through."""
    if shaping.include and not any(fnmatch.fnmatchcase(original, p) for p in shaping.include):
        return False
    return not any(fnmatch.fnmatchcase(original, p) for p in shaping.exclude)


def shape_tools(
    shaping: ToolShapingConfig, tools: Mapping[str, types.Tool], *, backend: str = ""
) -> dict[str, ShapedTool]:
    """Apply ``shaping`` to one backend's catalog; the result is keyed by the shaped name.

    Order is preserved. A rename whose new name is already used by another exposed tool of
    the same backend is not applied (the tool keeps its original name) and a warning is
    logged. Only if that original name was itself claimed by a rename is the tool left out
    (again with a warning): two tools can never share one exposed name.
    """
    if shaping.is_identity:
        return {name: ShapedTool(name, name, tool) for name, tool in tools.items()}
    kept = [(name, tool) for name, tool in tools.items() if is_exposed(shaping, name)]
    unrenamed = {name for name, _ in kept if name not in shaping.rename}
    result: dict[str, ShapedTool] = {}
    for original, tool in kept:
        name = shaping.rename.get(original, original)
        if name != original and (name in unrenamed or name in result):
            logger.warning(
                "backend '%s': rename of tool '%s' to '%s' not applied: another tool of this "
                "backend is already exposed as '%s'",
                backend,
                original,
                name,
                name,
            )
            name = original
        description = shaping.descriptions.get(original)
        if description is not None:
            tool = tool.model_copy(update={"description": description})
        if name in result:  # the fallback name was claimed by another tool's rename
            logger.warning(
                "backend '%s': tool '%s' clashes with a renamed tool; it is not exposed",
                backend,
                original,
            )
            continue
        result[name] = ShapedTool(name, original, tool)
    for original in shaping.rename:
        if original not in tools:
            logger.debug("backend '%s': rename of unknown tool '%s' ignored", backend, original)
    return result
