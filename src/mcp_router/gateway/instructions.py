"""The router's ``initialize`` instructions: its own text, then each backend's, under its name.

Backends explain themselves in their ``instructions`` (how to use their tools, what their
resources mean); a client of the router must get that text too. Each backend's text appears
under a heading naming the backend and the namespace its tools carry, bounded in length so
one verbose server cannot crowd out the others or the client's context.
"""

from __future__ import annotations

from collections.abc import Iterable

from mcp_router.backends.backend import Backend

PER_BACKEND_CHARS = 2000
TOTAL_CHARS = 8000
_CUT = " [...]"


def _bounded(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - len(_CUT)].rstrip() + _CUT


def aggregate(own: str, backends: Iterable[Backend], separator: str = "_") -> str:
    """``own`` followed by every connected backend's instructions (bounded), in config order."""
    parts = [own]
    used = len(own)
    for backend in backends:
        text = (backend.instructions or "").strip()
        if not text:
            continue
        where = (
            f"tools prefixed `{backend.namespace}{separator}`"
            if backend.namespace
            else "tools unprefixed"
        )
        section = f"\n\n## Backend '{backend.name}' ({where})\n\n" + _bounded(
            text, PER_BACKEND_CHARS
        )
        if used + len(section) > TOTAL_CHARS:
            parts.append(f"\n\n(further backends' instructions left out: over {TOTAL_CHARS} chars)")
            break
        parts.append(section)
        used += len(section)
    return "".join(parts)
