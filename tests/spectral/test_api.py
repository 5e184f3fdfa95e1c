"""The spectral package as a library: no import cycles, errors that name Python parameters, and one
source of defaults (DriftConfig) behind the CLI."""

import ast
import json
import re
from pathlib import Path

import pytest
import torch

import spindoctor
from spindoctor.errors import UserError
from spindoctor.spectral import Checkpoint, DriftConfig, drift, factorize, parse_k, select_matrices
from spindoctor.spectral.svd import torch_dtype

from .test_checkpoints import run, save_pair, tiny_model

SRC = Path(spindoctor.__file__).parent


def imports_of(path: Path, package: str) -> set[str]:
    """Every spindoctor module ``path`` imports, at any depth (function-local and TYPE_CHECKING included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else f"{package}.{node.module}"
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m for m in out if m.startswith("spindoctor")}


def graph(*packages: str) -> dict[str, set[str]]:
    modules = {}
    for pkg in packages:
        for f in sorted((SRC / pkg).glob("*.py")):
            name = f"spindoctor.{pkg}" if f.stem == "__init__" else f"spindoctor.{pkg}.{f.stem}"
            modules[name] = f
    return {m: imports_of(f, m.rsplit(".", 1)[0]) & set(modules) - {m} for m, f in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return [*stack[stack.index(n):], n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


@pytest.mark.parametrize("package", ["spectral", "toy"], ids=["spectral", "toy"])
def test_no_import_cycle(package):
    edges = graph(package)  # `from spindoctor.spectral import x` counts as importing the package too
    assert find_cycle(edges) is None, find_cycle(edges)


def test_outputs_do_not_import_the_run():
    assert not {"spindoctor.spectral.run"} & graph("spectral")["spindoctor.spectral.outputs"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return save_pair(tiny_model("llama"), tmp_path_factory.mktemp("llama"))


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda p: torch_dtype("float16"), "dtype must be"),
        (lambda p: factorize(torch.eye(3), dtype="half"), "dtype must be"),
        (lambda p: factorize(torch.eye(3), method="qr"), "method must be"),
        (lambda p: factorize(torch.eye(3), method="randomized"), "needs rank"),
        (lambda p: drift(*p, method="randomized", cache_dir=None), "rank"),
        (lambda p: drift(*p, dtype="float16", cache_dir=None), "dtype"),
        (lambda p: drift(*p, matrices="everything", cache_dir=None), "matrices"),
        (lambda p: drift(*p, k=[1.5], cache_dir=None), "k"),
        (lambda p: drift(*p, figure_matrices=["("], cache_dir=None), "figure_matrices"),
        (lambda p: parse_k("half"), "k must be"),
        (lambda p: select_matrices(Checkpoint(p[0]), "everything"), "preset"),
        (lambda p: select_matrices(Checkpoint(p[0]), "paper", "("), "regex"),
    ],
    ids=["torch-dtype", "factorize-dtype", "factorize-method", "factorize-rank", "drift-rank", "drift-dtype",
         "drift-matrices", "drift-k", "drift-figure-matrices", "parse-k", "select-preset", "select-regex"],
)
def test_library_errors_name_the_parameter_not_a_flag(call, needle, pair):
    with pytest.raises(UserError) as info:
        call(pair)
    message = str(info.value)
    assert needle in message and "--" not in message and len(message.splitlines()) == 1


def test_cli_defaults_come_from_drift_config(pair, tmp_path, capsys):
    a, b = pair
    code, _, err = run(capsys, "drift", a, b, "--out", tmp_path / "o", "--no-cache", "--no-figures")
    assert code == 0, err
    used = json.loads((tmp_path / "o" / "metrics.json").read_text())["config"]
    defaults = DriftConfig(cache_dir=None, figures=False).model_dump(mode="json")
    assert used == defaults


def test_help_states_the_config_defaults(capsys):
    from spindoctor.cli import main

    assert main(["drift", "--help"]) == 0
    text = re.sub(r"[\s│]", "", capsys.readouterr().out)  # rich wraps help text in boxes
    assert "default:paper" in text and "default:0.25,0.5,1.0" in text and "default:float32" in text
