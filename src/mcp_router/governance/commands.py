"""``mcp-router pins list`` and ``mcp-router pins approve NAME... | --all``.

Both read the same ``--config`` and ``MCP_*`` environment as the router (so they find the
same pins file), and work while routers run: approvals are a locked, atomic update of the
store, which running routers pick up within ``MCP_CONFIG_POLL_INTERVAL`` seconds.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from mcp_router.governance.pins import (
    FilePinStore,
    PinState,
    PinStore,
    default_pins_path,
    render_diff,
)
from mcp_router.settings import RouterSettings

__all__ = ["pins_approve", "pins_list", "pins_store"]


def pins_store(settings: RouterSettings) -> PinStore:
    """The store a router with these settings uses."""
    return FilePinStore(settings.pins_file or default_pins_path())


def _label(record: dict[str, Any]) -> str:
    return (
        f"{record.get('kind')} '{record.get('exposed')}' "
        f"(backend '{record.get('backend')}', {record.get('kind')} '{record.get('name')}')"
    )


def pins_list(store: PinStore, *, as_json: bool = False) -> int:
    """Print every pending change with a readable diff; exit status 0."""
    state = store.read()
    if as_json:
        out = {
            "store": store.describe(),
            "pinned": len(state.pins),
            "pending": [
                {
                    "key": key,
                    **{k: v for k, v in record.items() if k != "definition"},
                    "definition": record.get("definition"),
                    "pinned_definition": state.pins.get(key, {}).get("definition"),
                }
                for key, record in sorted(state.pending.items())
            ],
        }
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    print(f"pins: {store.describe()} ({len(state.pins)} pinned, {len(state.pending)} pending)")
    if not state.pending:
        print("no pending changes")
        return 0
    for key, record in sorted(state.pending.items()):
        pinned = state.pins.get(key)
        what = "new, never approved" if pinned is None else "changed since pinned"
        print(f"\n{_label(record)}: {what}; seen {record.get('seen_at', '?')}")
        print(
            render_diff(
                None if pinned is None else pinned.get("definition"),
                record.get("definition") or {},
                str(record.get("exposed")),
            )
        )
    names = " ".join(sorted({str(r.get("exposed")) for r in state.pending.values()}))
    print(f"\napprove with: mcp-router pins approve {names}   (or --all)")
    return 0


def pins_approve(store: PinStore, names: Sequence[str], *, approve_all: bool = False) -> int:
    """Accept the pending definitions named (exposed names, or ``backend:name``)."""
    if not names and not approve_all:
        print(
            "mcp-router pins approve: name one or more pending changes, or --all", file=sys.stderr
        )
        return 2
    approved: list[dict[str, Any]] = []
    unknown: list[str] = []

    def change(state: PinState) -> bool:
        approved.clear()
        unknown.clear()
        keys: list[str] = list(state.pending) if approve_all else []
        for name in names:
            found = state.find_pending(name)
            if not found:
                unknown.append(name)
            keys += [k for k in found if k not in keys]
        if unknown:
            return False  # all or nothing: a typo approves nothing
        approved.extend(state.approve(key) for key in keys)
        return bool(approved)

    state = store.modify(change)
    if unknown:
        pending = ", ".join(sorted({str(r.get("exposed")) for r in state.pending.values()}))
        print(
            f"mcp-router pins approve: no pending change named {', '.join(map(repr, unknown))} "
            f"(pending: {pending or 'none'}); nothing approved",
            file=sys.stderr,
        )
        return 1
    if not approved:
        print("no pending changes")
        return 0
    for record in approved:
        print(f"approved {_label(record)}")
    print(f"{len(approved)} definition(s) approved in {store.describe()}")
    return 0
