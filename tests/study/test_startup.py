"""Every config error a stage would hit late fails at startup: exit 2, one line, no stage run, nothing written."""

import re

import pytest

from spindoctor.cli import main

LATE = {
    "drift-matrices": ("drift: {matrices: nonsense}", "drift.matrices"),
    "drift-figure-regex": ("drift: {figure_matrices: ['(']}", "drift.figure_matrices"),
    "sweeps-matrices": ("sweeps: {matrices: nonsense}", "matrices must be one of"),
    "sweeps-regex": ("sweeps: {regex: '('}", "does not compile"),
    "sweeps-ks-over-1": ("sweeps: {ks: [5.0]}", "sweeps.ks"),
    "select-unknown-key": ("select: {overrides: {bogus: 1}}", "select.overrides.bogus"),
    "select-even-window": ("select: {overrides: {window: 4}}", "window must be odd"),
    "select-z-not-a-number": ("select: {overrides: {z: abc}}", "select.overrides.z"),
    "base-path-without-safetensors": ("base: {path: BASE}", "no \\*.safetensors"),
    "base-path-missing": ("base: {path: BASE/nothing}", "checkpoint folder not found"),
    "quick-not-a-mapping": ("quick: 5", "quick must be a mapping"),
    "invalid-yaml": ("sft: [", "not valid YAML"),
}


def _config(tmp_path, text: str | bytes):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    path = tmp_path / "study.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text.replace("BASE", str(base)))
    return path


@pytest.mark.parametrize("quick", [[], ["--quick"]], ids=["full", "quick"])
@pytest.mark.parametrize(("text", "message"), [*LATE.values(), (b"name: \xff\xfe\n", "not UTF-8")],
                         ids=[*LATE.keys(), "not-utf8"])
def test_late_config_errors_fail_at_startup(tmp_path, calls, capsys, text, message, quick):
    out = tmp_path / "run"
    code = main(["study", "--config", str(_config(tmp_path, text)), "--out", str(out), "--json", *quick])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert re.search(message, err[0]), err[0]
    assert calls == [] and not out.exists()
