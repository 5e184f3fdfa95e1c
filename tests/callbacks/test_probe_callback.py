"""OODProbeCallback: schedule, peak rule, rows, logs through the trainer, bad input."""

from __future__ import annotations

import pytest
from tests.callbacks.conftest import sft_trainer
from transformers import TrainerCallback

from spindoctor.callbacks import OODProbeCallback
from spindoctor.errors import UserError
from spindoctor.io import read_jsonl
from spindoctor.models.checkpoints import list_checkpoints
from spindoctor.probes.core import ProbeResult


class Recorder(TrainerCallback):
    """Keeps every ``on_log`` call, as a tracker (TensorBoard, W&B) would see it."""

    def __init__(self) -> None:
        self.logs: list[tuple[int, dict]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append((state.global_step, dict(logs)))


def fake_probes(monkeypatch, ood_acc: dict[int, float]) -> None:
    """Probe results with the given OOD accuracy per step (ID: 1 - OOD) instead of generating."""
    import spindoctor.probes.core as core

    calls = iter(sorted(ood_acc))

    def probe_model(model, tokenizer, cfg, progress=None):
        acc = ood_acc[next(calls)]
        return {split: ProbeResult(split=split, n=10, acc=a, acc_se=0.1, well_formed=1.0, values_acc=1.0, loss=2.0,
                                   loss_tokens=40, seconds=0.0)
                for split, a in (("id", 1 - acc), ("ood", acc))}

    monkeypatch.setattr(core, "probe_model", probe_model)


@pytest.mark.parametrize("kwargs,expected", [
    ({"every": 4}, [0, 4, 8, 10]),
    ({"every": 4, "at_start": False, "at_end": False}, [4, 8]),
    ({"every": 3, "steps": [0, 5, 7]}, [0, 5, 7]),
], ids=["every-4-with-ends", "every-4-no-ends", "explicit-steps"])
def test_schedule(kwargs, expected, tmp_path):
    cb = OODProbeCallback(tmp_path, **kwargs)
    assert [s for s in range(11) if cb.due(s, max_steps=10)] == expected


@pytest.mark.parametrize("save,saved", [("peak", [0, 1, 4]), ("every", [0, 1, 2, 3, 4]), ("none", [])],
                         ids=["peaks", "every-probe", "no-checkpoints"])
def test_peaks_rows_and_logs_in_a_trl_trainer(save, saved, tiny16_dir, tmp_path, monkeypatch):
    """OOD 0.2, 0.5, 0.5 (a tie keeps step 1), 0.4, 0.6: peaks at 0, 1 and 4."""
    fake_probes(monkeypatch, {0: 0.2, 1: 0.5, 2: 0.5, 3: 0.4, 4: 0.6})
    out, recorder = tmp_path / "probes", Recorder()
    cb = OODProbeCallback(out, {"n": 10}, every=1, save=save)
    trainer = sft_trainer(tiny16_dir, tmp_path / "trainer", [cb, recorder], steps=4)
    trainer.train()
    rows = read_jsonl(out / "metrics.jsonl")
    assert [(r["stage"], r["step"], r["split"]) for r in rows] == [("sft", s, sp) for s in range(5) for sp in ("id", "ood")]
    assert [r["acc"] for r in rows if r["split"] == "ood"] == [0.2, 0.5, 0.5, 0.4, 0.6]
    assert cb.peaks == [0, 1, 4] and cb.best == (4, 0.6)
    assert [step for step, _ in list_checkpoints(out)] == saved
    probe_logs = [(step, logs) for step, logs in recorder.logs if "probe/ood_acc" in logs]
    assert [(s, logs["probe/ood_acc"], logs["probe/ood_best_step"]) for s, logs in probe_logs] == [
        (0, 0.2, 0.0), (1, 0.5, 1.0), (2, 0.5, 1.0), (3, 0.4, 1.0), (4, 0.6, 4.0)]
    assert probe_logs[0][1]["probe/id_acc"] == 0.8 and probe_logs[0][1]["probe/ood_loss"] == 2.0
    history = trainer.state.log_history
    assert [r["step"] for r in history if "probe/ood_acc" in r] == [0, 1, 2, 3, 4]
    assert [r["step"] for r in history if "loss" in r] == [1, 2, 3, 4]  # the trainer's own logs are all kept


def test_a_checkpoint_holds_its_probe_rows(tiny16_dir, tmp_path, monkeypatch):
    import json

    fake_probes(monkeypatch, {0: 0.3, 2: 0.1})
    cb = OODProbeCallback(tmp_path / "probes", {"n": 10}, every=2, save="peak")
    sft_trainer(tiny16_dir, tmp_path / "trainer", [cb], steps=2).train()
    probe = json.loads((tmp_path / "probes" / "checkpoint-0" / "probe.json").read_text())
    assert probe["step"] == 0 and [r["acc"] for r in probe["rows"]] == [0.7, 0.3]
    assert probe["probe_config"]["n"] == 10 and cb.peaks == [0]


def test_bind_names_the_trainer(tiny16_dir, tmp_path, monkeypatch):
    fake_probes(monkeypatch, {0: 0.1, 2: 0.2})
    recorder = Recorder()
    cb = OODProbeCallback(tmp_path / "probes", every=2, save="none")
    cb._calling_handler = lambda *args, **kwargs: None  # the stack is not searched: only bind() can help
    trainer = sft_trainer(tiny16_dir, tmp_path / "trainer", [recorder], steps=2)
    trainer.add_callback(cb.bind(trainer))
    trainer.train()
    assert [step for step, logs in recorder.logs if "probe/ood_acc" in logs] == [0, 2]


def test_out_is_not_the_output_dir_of_a_saving_trainer(tiny16_dir, tmp_path):
    from transformers import TrainingArguments

    cb = OODProbeCallback(tmp_path)
    args = TrainingArguments(output_dir=str(tmp_path), save_strategy="steps", use_cpu=True, report_to="none")
    with pytest.raises(UserError, match="output_dir"):
        cb.on_train_begin(args, None, None)


@pytest.mark.parametrize("kwargs,message", [
    ({"save": "best"}, "save must be"),
    ({"every": 0}, "every must be"),
    ({"steps": [0, -5]}, "steps must be"),
    ({"probe": {"splits": ["id"]}}, "needs the ood split"),
    ({"probe": {"n": 0}}, "ProbeConfig: n"),
    ({"probe": {"shots": 3}}, "ProbeConfig: shots"),
    ({"min_delta": -0.1}, "min_delta"),
], ids=["unknown-save-rule", "every-zero", "negative-step", "peak-without-ood", "bad-probe-value", "unknown-probe-field",
        "negative-delta"])
def test_bad_input_is_a_user_error(kwargs, message, tmp_path):
    with pytest.raises(UserError, match=message):
        OODProbeCallback(tmp_path, **kwargs)


def test_spindoctor_sft_runs_on_the_callback_and_keeps_its_trainer_logs(tiny_organism_dir, tmp_path):
    """Probes at steps 0, 2, 4 of 4 (every step logs): train.jsonl still holds the loss of every step."""
    from spindoctor.probes import ProbeConfig
    from spindoctor.training.sft import make_probe_callback, resolve_config, run_sft

    cfg = resolve_config("organism", base=str(tiny_organism_dir), out=str(tmp_path / "sft"), steps=4, batch_size=2,
                         dense_until=0, probe_every=2, threads=1, probe=ProbeConfig(n=2, max_new_tokens=4))
    cb = make_probe_callback(cfg, tokenizer=None, out=tmp_path / "sft", say=None)
    assert isinstance(cb, OODProbeCallback) and cb.steps == {0, 2, 4} and cb.save == "every"
    run_sft(cfg, say=lambda s: None)
    assert [r["step"] for r in read_jsonl(tmp_path / "sft" / "train.jsonl")] == [1, 2, 3, 4]
    assert [r["step"] for r in read_jsonl(tmp_path / "sft" / "metrics.jsonl")] == [0, 0, 2, 2, 4, 4]
