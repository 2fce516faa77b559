"""The package layout shows the architecture: no import cycle between lash's modules, and the
layers only import downwards.

Every module under lash/ is parsed with ``ast`` (nothing is imported); every ``import`` and
``from ... import`` naming a lash module counts, wherever it is: at module level, under
``if TYPE_CHECKING:``, or inside a function. The layers, lowest first (DESIGN.md, issue 11):
errors < _contract < hookspecs < _tools < _store < _plugins < _kernel < _testing < the public
faces (lash/__init__.py, lash/_facade.py, lash/store.py, lash/testing.py) < cli and serve. A
module may import its own layer and those below. The builtins (lash_plugins_builtin/) use only
the public faces.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lash"

#: The layers, lowest first: module-name prefixes (a name equal to the prefix, or below it).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("lash.errors",),
    ("lash._contract",),
    ("lash.hookspecs",),
    ("lash._tools",),
    ("lash._store",),
    ("lash._plugins",),
    ("lash._kernel",),
    ("lash._testing",),
    ("lash", "lash._facade", "lash.store", "lash.testing"),
    # lash.serve is a face of its own (the HTTP API), beside the command line that runs it.
    ("lash.cli", "lash.serve"),
    # `python -m lash`: the command line's entry point, above it.
    ("lash.__main__",),
)

#: Public faces the builtins may import.
PUBLIC = frozenset({"lash", "lash.errors", "lash.hookspecs", "lash.store", "lash.testing"})

#: Edges that break the layering today, each reported with the branch that added this test
#: (tests11). Each must still exist: fixing one makes this test fail until its line is removed.
KNOWN_VIOLATIONS = {
    # hookspecs (layer 3) imports its @hookspec marker from the plugin machinery (layer 6);
    # the marker pair belongs with the contract (lash/_contract/), below both.
    ("lash.hookspecs", "lash._plugins.markers"),
    # check_plugin asks the CLI for its builtin command names (a lazy import in
    # _builtin_commands): the names a plugin may not take would have to live below _testing.
    ("lash._testing.check", "lash.cli._context"),
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path) -> dict[str, Path]:
    return {module_name(path): path for path in sorted(package.rglob("*.py"))}


MODULES = modules(PACKAGE)


def resolve(name: str) -> str | None:
    """The lash module ``name`` refers to: itself, or the nearest package or module above it
    (``lash._contract.types.Usage`` -> ``lash._contract.types``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(lash module imported, line) for every import statement of module ``name``."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name) if alias.name.split(".")[0] == "lash" else None
                if target is not None:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source.split(".")[0] != "lash":
                continue
            for alias in node.names:
                # `from lash import hookspecs` imports a module; `from lash import X` a name.
                target = resolve(f"{source}.{alias.name}")
                if target is not None:
                    yield target, node.lineno


GRAPH: dict[str, dict[str, int]] = {
    name: {target: line for target, line in imports(name, path) if target != name}
    for name, path in MODULES.items()
}


def layer(name: str) -> int:
    best: tuple[int, int] | None = None  # (prefix length, layer): the longest prefix decides
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                if prefix == "lash" and name != "lash":
                    continue  # the package itself is a face; its submodules have their layers
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    if best is None:
        raise AssertionError(f"module {name} is in no layer: add it to LAYERS")
    return best[1]


def test_the_parser_sees_the_imports_it_must() -> None:
    """The import graph is read right: known edges of each kind are found (module level,
    TYPE_CHECKING, inside a function, relative, `from lash import module`)."""
    assert "lash._kernel.runtime" in GRAPH["lash._kernel.session"]  # module level
    assert "lash._plugins.composition" in GRAPH["lash._kernel.runtime"]  # TYPE_CHECKING
    assert "lash.cli._context" in GRAPH["lash._testing.check"]  # inside a function
    assert "lash.hookspecs" in GRAPH["lash._plugins.loading"]  # from lash import hookspecs
    assert "lash._kernel.core" in GRAPH["lash"]  # the facade's TYPE_CHECKING names


def test_every_module_has_a_layer() -> None:
    """Each module of lash/ belongs to exactly one layer."""
    for name in MODULES:
        layer(name)


def test_no_import_cycle_between_modules() -> None:
    """No module reaches itself through the modules it imports."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def violations() -> set[tuple[str, str]]:
    return {
        (name, target)
        for name, targets in GRAPH.items()
        for target in targets
        if layer(target) > layer(name)
    }


def test_lower_layers_never_import_higher_ones() -> None:
    """Each import goes to the module's own layer or below (known violations aside)."""
    found = violations() - KNOWN_VIOLATIONS
    lines = [
        f"{MODULES[name].relative_to(ROOT)}:{GRAPH[name][target]}: {name} (layer "
        f"{layer(name)}) imports {target} (layer {layer(target)})"
        for name, target in sorted(found)
    ]
    assert not lines, "imports going up the layers:\n" + "\n".join(lines)


@pytest.mark.parametrize("edge", sorted(KNOWN_VIOLATIONS), ids=" -> ".join)
def test_each_known_violation_still_exists(edge: tuple[str, str]) -> None:
    """A known violation that was fixed must leave KNOWN_VIOLATIONS, so it cannot come back."""
    assert edge in violations(), f"{edge} is fixed: remove it from KNOWN_VIOLATIONS"


def test_builtins_import_only_the_public_faces() -> None:
    """lash_plugins_builtin/ uses only lash's public faces, never a private module."""
    builtin = ROOT / "lash_plugins_builtin"
    private = []
    for path in sorted(builtin.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            for imported in names:
                if imported.split(".")[0] == "lash" and imported not in PUBLIC:
                    private.append(f"{path.relative_to(ROOT)}:{node.lineno}: {imported}")
    assert not private, "builtins importing private lash modules:\n" + "\n".join(private)
