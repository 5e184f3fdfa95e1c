"""Real weights: `spindoctor study --config smollm2-135m --quick` on SmolLM2-135M-Instruct (slow).

Runs only with ``SPINDOCTOR_SMOLLM2`` naming the folder ``spindoctor models
import-gguf`` wrote (README, "Real weights"); skips otherwise. The shipped
config reads its base from ``.cache/smollm2-135m`` relative to the working
folder, so the study runs in a temporary folder where that path links to the
imported weights: the config itself is used unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spindoctor.study.config import load_study_config

pytestmark = pytest.mark.slow


@pytest.fixture
def weights() -> Path:
    where = os.environ.get("SPINDOCTOR_SMOLLM2")
    if not where:
        pytest.skip("set SPINDOCTOR_SMOLLM2 to the imported SmolLM2-135M-Instruct folder (README, 'Real weights')")
    path = Path(where)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        pytest.skip(f"SPINDOCTOR_SMOLLM2={where} holds no imported checkpoint (config.json, model.safetensors)")
    return path.resolve()


def test_config_has_a_quick_section_reading_the_imported_weights():
    cfg = load_study_config("smollm2-135m", quick=True)
    assert cfg.base.path == ".cache/smollm2-135m"
    assert cfg.probe["n"] <= 8 and cfg.sft.overrides["steps"] <= 4


def test_quick_study_runs_on_the_real_weights(weights, tmp_path):
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "smollm2-135m").symlink_to(weights, target_is_directory=True)
    proc = subprocess.run(
        [sys.executable, "-m", "spindoctor.cli", "study", "--config", "smollm2-135m", "--quick",
         "--out", "run", "--json"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    run = tmp_path / "run"
    assert (run / "report" / "index.html").is_file() and (run / "report" / "summary.md").is_file()
    selection = json.loads((run / "sft" / "selection.json").read_text())
    assert selection["signal"] in ("accuracy", "loss") and selection["why"]
    assert summary["run"]
