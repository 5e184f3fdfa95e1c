"""The README's "Use it in your own trainer" example runs as written and its numbers reach TensorBoard."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spindoctor.io import read_jsonl

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "### Use it in your own trainer"


def readme_example() -> str:
    """The first python block after the section's heading."""
    text = README.read_text(encoding="utf-8")
    section = text.split(HEADING, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, f"no python block under {HEADING!r} in README.md"
    return match.group(1)


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of every scalar in the TensorBoard event files under ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = sorted({p.parent for p in log_dir.rglob("events.out.tfevents.*")})
    assert len(runs) == 1, runs
    acc = EventAccumulator(str(runs[0]))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_the_readme_example_writes_rows_and_tensorboard_scalars(tiny16_dir, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPINDOCTOR_MODEL", str(tiny16_dir))
    exec(compile(readme_example(), str(README), "exec"), {"__name__": "readme_example"})  # noqa: S102

    out = tmp_path / "runs" / "mine"
    probes = read_jsonl(out / "metrics.jsonl")
    drift = read_jsonl(out / "drift.jsonl")
    assert [(r["step"], r["split"]) for r in probes] == [(s, sp) for s in (0, 4, 8) for sp in ("id", "ood")]
    assert sorted({(r["step"], r["kind"]) for r in drift}) == [
        (s, k) for s in (4, 8) for k in ("all", "down_proj", "k_proj", "q_proj", "v_proj")]
    assert (out / "checkpoint-0" / "probe.json").exists()  # the first probe is the first OOD peak

    tb = scalars(out / "trainer")
    ood = [(r["step"], r["acc"]) for r in probes if r["split"] == "ood"]
    assert [(s, pytest.approx(v)) for s, v in tb["train/probe/ood_acc"]] == ood
    assert [s for s, _ in tb["train/probe/id_loss"]] == [0, 4, 8]
    angles = [(r["step"], r["k0.25_u_mean"]) for r in drift if r["kind"] == "all"]
    assert tb["train/drift/all/k0.25_u_mean"] == [(s, pytest.approx(v, rel=1e-6)) for s, v in angles]
    assert [s for s, _ in tb["train/drift/q_proj/ds_rel_mean_abs"]] == [4, 8]
    assert [s for s, _ in tb["train/loss"]] == [2, 4, 6, 8]  # the trainer's own logs are all there
