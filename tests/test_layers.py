"""The import graph of src/ follows the layer table of docs/design.md and has no cycle.

Every ``import`` / ``from ... import`` in every module counts, at any depth
(function-local imports and ``TYPE_CHECKING`` blocks included): a module may
import its own package and the layers below its own, never a layer above nor a
sibling package of the same layer. Library modules import no ``cli`` module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DESIGN = ROOT / "docs" / "design.md"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / "spindoctor").rglob("*.py"))}


def imported(name: str, path: Path) -> set[str]:
    """The spindoctor modules that ``name`` (at ``path``) imports, resolved to existing modules."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # ``import spindoctor.x.y`` names a module or a package
                target = target.rpartition(".")[0]
            if target.startswith("spindoctor") and target != name:
                found.add(target)
    return found


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def layer_table() -> dict[str, int]:
    """``{unit: layer}`` from the table between the layer markers of docs/design.md."""
    text = DESIGN.read_text(encoding="utf-8")
    block = text.split("<!-- layers:begin -->")[1].split("<!-- layers:end -->")[0]
    table: dict[str, int] = {}
    for row in re.findall(r"^\|\s*(\d+)\s*\|([^|]+)\|", block, flags=re.M):
        for unit in re.findall(r"`([\w.]+)`", row[1]):
            table[unit] = int(row[0])
    return table


LAYERS = layer_table()


def unit_of(module: str) -> str:
    """The most specific entry of the layer table that holds ``module``."""
    if module in LAYERS:
        return module
    parts = module.split(".")
    for n in range(len(parts) - 1, 1, -1):  # never the bare ``spindoctor``: new packages must be placed
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} is in no layer of docs/design.md")


def test_the_table_places_every_module():
    assert LAYERS, "no layer table found in docs/design.md"
    for module in MODULES:
        unit_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    unit = unit_of(module)
    bad = [f"{target} (layer {LAYERS[unit_of(target)]})" for target in sorted(GRAPH[module])
           if unit_of(target) != unit and LAYERS[unit_of(target)] >= LAYERS[unit]]
    assert not bad, f"{module} (layer {LAYERS[unit]}, {unit}) imports {', '.join(bad)}"


def test_library_modules_import_no_cli_module():
    def is_cli(module: str) -> bool:
        return module.rpartition(".")[2] == "cli" or module.endswith("_cli")

    bad = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if not is_cli(m) for t in targets if is_cli(t))
    assert not bad, bad


def test_no_import_cycle():
    """Tarjan's strongly connected components of the module graph: every one is a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"
