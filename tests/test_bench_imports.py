"""Every ``from spindoctor... import name`` in bench/ names something that exists.

The bench scripts import lazily inside functions and are not run by the suite,
so a rename in the package would otherwise break them silently (bench/rl.py
once imported PRESETS from a module that no longer re-exported it).
"""

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def spindoctor_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for each ``from spindoctor.x import name`` anywhere in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(node.module, alias.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "spindoctor"
            for alias in node.names]


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_bench_imports_resolve(script):
    imports = spindoctor_imports(script)
    missing = [f"{mod}.{name}" for mod, name in imports if not hasattr(importlib.import_module(mod), name)
               and importlib.util.find_spec(f"{mod}.{name}") is None]
    assert not missing, f"{script.name} imports names that do not exist: {missing}"
