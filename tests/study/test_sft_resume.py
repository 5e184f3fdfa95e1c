"""The study's SFT stage resumes an interrupted SFT run in place, or starts over when it cannot.

Base and SFT are the real stages (base points at the tiny organism); every later stage is a
fake (conftest.py ``calls``), so only the SFT stage trains.
"""

import json
import warnings

import pytest
from transformers import TrainerCallback

import spindoctor.training.sft as sft
from spindoctor.io import read_jsonl
from spindoctor.study import pipeline
from spindoctor.study.config import load_study_config
from spindoctor.study.runfolder import StudyNotice
from spindoctor.study.stages import STAGES

NAMES = [name for name, _ in STAGES]


class Killed(Exception):
    """Raised by :class:`KillAt`."""


class KillAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(self.step)


@pytest.fixture
def cfg(tiny_organism_dir):
    """The quick study (SFT: 12 steps, probes at 0, 3, 6, 12) on the tiny organism, one thread."""
    data = load_study_config("organism", quick=True).model_dump(mode="json")
    data["base"]["path"], data["threads"] = str(tiny_organism_dir), 1
    return type(load_study_config("organism", quick=True)).model_validate(data)


def _run(cfg, run):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StudyNotice)
        markers = pipeline.run_study(cfg, run, progress=False)
    return markers, [str(w.message) for w in caught if issubclass(w.category, StudyNotice)]


def test_an_interrupted_sft_stage_resumes_where_it_stopped(tmp_path, calls, cfg, monkeypatch, isolated_cache):
    fakes, real = dict(pipeline.STAGES), dict(STAGES)
    monkeypatch.setattr(pipeline, "STAGES", [(n, real[n] if n in ("base", "sft") else fakes[n]) for n in NAMES])
    run_sft = sft.run_sft
    monkeypatch.setattr(sft, "run_sft", lambda c, **kw: run_sft(c, callbacks=[KillAt(8)], **kw))
    with pytest.raises(Killed):
        pipeline.run_study(cfg, tmp_path, progress=False)
    first = (tmp_path / "sft" / "checkpoint-3" / "model.safetensors").stat().st_ino
    monkeypatch.setattr(sft, "run_sft", run_sft)
    markers, notices = _run(cfg, tmp_path)
    assert notices == [] and calls == NAMES[2:]  # base done, sft resumed, the rest ran
    assert markers["sft"]["summary"]["resumed_from"] == 6
    assert (tmp_path / "sft" / "checkpoint-3" / "model.safetensors").stat().st_ino == first  # kept, not redone
    keys = [(r["step"], r["split"]) for r in read_jsonl(tmp_path / "sft" / "metrics.jsonl")]
    assert keys == [(s, split) for s in (0, 3, 6, 12) for split in ("id", "ood")]
    assert json.loads((tmp_path / "sft" / "done.json").read_text())["resumed_from"] == 6


def test_an_sft_stage_without_a_usable_resume_state_starts_over(tmp_path, calls, cfg, monkeypatch):
    stages = dict(pipeline.STAGES)

    def broken(ctx):
        """Dies before its first resume state."""
        (ctx.run / "sft").mkdir()
        (ctx.run / "sft" / "metrics.jsonl").write_text('{"stage": "sft", "step": 0, "split": "id"}\n')
        raise Killed(0)

    monkeypatch.setattr(pipeline, "STAGES", [(n, broken if n == "sft" else stages[n]) for n in NAMES])
    with pytest.raises(Killed):
        pipeline.run_study(cfg, tmp_path, progress=False)
    monkeypatch.setattr(pipeline, "STAGES", list(stages.items()))
    calls.clear()
    _, notices = _run(cfg, tmp_path)
    assert notices == ["sft: interrupted with no usable resume state; it starts over"]
    assert calls == NAMES[1:] and not (tmp_path / "sft" / "metrics.jsonl").exists()  # emptied, then the fake ran
