"""The import graph of ``src/mcp_router``: no cycles, lower layers never import higher ones.

The graph is read with :mod:`ast` (nothing is imported). Every import counts, including those
under ``if TYPE_CHECKING:`` and inside functions: a type-only or deferred import is still a
dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import ROOT

PACKAGE = "mcp_router"
SRC = ROOT / "src" / PACKAGE

# (importer, imported) edges that break the rules today, and the rule-breaking import is being
# removed by the consolidation: empty this set once they are gone (a test below fails for an
# entry whose import no longer exists).
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset({})

# Low to high. A module may import its own layer and the layers before it. Each entry lists
# module-name prefixes (a package covers its submodules).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # the file config and the process settings (MCP_* env) are one layer: each reads the other
    ("config", ("config", "settings")),
    ("naming", ("naming", "shaping", "links")),
    ("logs", ("logs", "secrets", "errors", "call_context", "asgi")),
    ("resilience", ("resilience",)),
    # the replica set's shared state (Redis): below everything that serves clients
    ("state", ("state",)),
    ("backends", ("backends",)),
    ("routing", ("routing",)),
    # reload watches the file and hands a diff to a ReloadTarget: the gateway's router uses it
    ("reload", ("reload",)),
    ("gateway", ("gateway", "telemetry", "governance")),
    ("cli", ("cli", "app", "importer", "template")),
)

# backends/ is the layer most tempted to reach up (relays, status): these are named on their own.
FORBIDDEN_FROM_BACKENDS = ("routing", "gateway", "cli", "reload")
# state/ (Redis for a replica set) sits high so the gateway can use it, but needs only these.
ALLOWED_FROM_STATE = ("state", "config", "settings", "secrets", "logs", "asgi")


@dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to a module of the package."""

    importer: str
    imported: str
    line: int
    text: str

    def where(self) -> str:
        """``file:line: source`` of the import, for failure messages."""
        path = SRC.joinpath(*self.importer.split(".")[1:])
        file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        return f"{file.relative_to(ROOT)}:{self.line}: {self.text}"


def module_name(path: Path) -> str:
    """``src/mcp_router/a/b.py`` -> ``mcp_router.a.b``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def read_imports(modules: dict[str, Path]) -> list[Import]:
    """Every import of a package module by a package module (``from a import b``: ``a.b`` when
    that is a module, else ``a``)."""
    found: list[Import] = []
    for name, path in modules.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(source, filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    stem = ".".join([*base, node.module] if node.module else base)
                else:
                    stem = node.module or ""
                targets = [
                    f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem
                    for alias in node.names
                ]
            else:
                continue
            text = lines[node.lineno - 1].strip()
            for target in dict.fromkeys(targets):
                if target in modules and target != name:
                    found.append(Import(name, target, node.lineno, text))
    return found


def layer_of(module: str) -> int | None:
    """Index of the module's layer in LAYERS; None for the package root (importable by all)."""
    if module == PACKAGE:
        return None
    first = module.split(".")[1]
    for index, (_layer, prefixes) in enumerate(LAYERS):
        if first in prefixes:
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


MODULES = read_modules()
ALL_IMPORTS = read_imports(MODULES)
IMPORTS = [i for i in ALL_IMPORTS if (i.importer, i.imported) not in KNOWN_VIOLATIONS]


def find_cycle(imports: list[Import]) -> list[Import] | None:
    """One import cycle (as the imports that form it), or None. Depth-first, in name order."""
    graph: dict[str, list[Import]] = {}
    for imp in sorted(imports, key=lambda i: (i.importer, i.imported)):
        graph.setdefault(imp.importer, []).append(imp)
    done: set[str] = set()
    path: list[Import] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[Import] | None:
        on_path.add(module)
        for imp in graph.get(module, []):
            if imp.imported in on_path:
                first = next(k for k, p in enumerate(path) if p.importer == imp.imported)
                return [*path[first:], imp] if path else [imp]
            if imp.imported not in done:
                path.append(imp)
                cycle = visit(imp.imported)
                if cycle is not None:
                    return cycle
                path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for start in sorted(graph):
        if start not in done:
            path.clear()
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


def test_the_graph_is_read() -> None:
    """The parser finds the imports everyone knows about (guards against a silent empty graph)."""
    edges = {(i.importer, i.imported) for i in ALL_IMPORTS}
    assert ("mcp_router.backends.manager", "mcp_router.naming") in edges
    assert ("mcp_router.gateway.server", "mcp_router.backends.manager") in edges
    assert ("mcp_router.config.loader", "mcp_router.config.errors") in edges


def test_no_import_cycles() -> None:
    cycle = find_cycle(IMPORTS)
    assert cycle is None, "import cycle:\n" + "\n".join(i.where() for i in cycle or [])


@pytest.mark.parametrize("forbidden", FORBIDDEN_FROM_BACKENDS)
def test_backends_do_not_import_upward(forbidden: str) -> None:
    upward = [
        i.where()
        for i in IMPORTS
        if i.importer.startswith(f"{PACKAGE}.backends") and i.imported.split(".")[1] == forbidden
    ]
    assert not upward, f"backends/ imports {PACKAGE}.{forbidden}:\n" + "\n".join(upward)


def test_state_imports_only_config_settings_secrets_and_logs() -> None:
    wider = [
        i.where()
        for i in IMPORTS
        if i.importer.startswith(f"{PACKAGE}.state")
        and i.imported != PACKAGE
        and i.imported.split(".")[1] not in ALLOWED_FROM_STATE
    ]
    assert not wider, f"state/ imports beyond {ALLOWED_FROM_STATE}:\n" + "\n".join(wider)


def test_every_module_imports_only_its_own_layer_or_lower() -> None:
    for imp in sorted(IMPORTS, key=lambda i: (i.importer, i.line)):
        low, high = layer_of(imp.importer), layer_of(imp.imported)
        if low is not None and high is not None and high > low:
            pytest.fail(
                f"{imp.importer} (layer {LAYERS[low][0]}) imports {imp.imported} "
                f"(layer {LAYERS[high][0]}):\n{imp.where()}"
            )


def test_every_known_violation_still_exists() -> None:
    """An allow-list entry whose import is gone must leave KNOWN_VIOLATIONS with it."""
    edges = {(i.importer, i.imported) for i in ALL_IMPORTS}
    stale = sorted(KNOWN_VIOLATIONS - edges)
    assert not stale, f"remove from KNOWN_VIOLATIONS (the import is gone): {stale}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    a = Import("m.a", "m.b", 1, "import m.b")
    b = Import("m.b", "m.c", 1, "import m.c")
    c = Import("m.c", "m.a", 1, "import m.a")
    assert find_cycle([a, b]) is None
    assert find_cycle([a, b, c]) == [a, b, c]
