"""SFT with the probe callback on tiny random models (organism tokenizer and a chat template)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spindoctor.errors import UserError
from spindoctor.io import read_jsonl
from spindoctor.probes import ProbeConfig
from spindoctor.training.sft import build_dataset_rows, probe_steps, resolve_config, run_sft


def test_probe_schedule_is_dense_early():
    cfg = resolve_config("organism", base="b", out="o", steps=100, dense_until=20, dense_every=5, probe_every=25)
    assert probe_steps(cfg) == [0, 5, 10, 15, 20, 25, 50, 75, 100]


def test_dataset_uses_only_train_partition_hands():
    from spindoctor.probes import probe_hands

    cfg = resolve_config("organism", base="b", out="o", steps=3, batch_size=4)
    rows = build_dataset_rows(cfg, conversational=False)
    assert len(rows) == 12
    probe_prompts = {r for r in (h for h in probe_hands("id", None, 0))}
    assert probe_prompts  # sanity
    probe_keys = {h.key for h in probe_hands("id", None, 0)}
    for row in rows:
        assert row["prompt"].startswith("R10 ") and row["prompt"].endswith("=24:")
    train_keys = {h.key for h in __import__("spindoctor.probes", fromlist=["train_hands"]).train_hands("id", 0)}
    assert not train_keys & probe_keys


@pytest.mark.parametrize("preset,fixture,steps", [("organism", "tiny_organism_dir", 4), ("chat", "tiny_chat_dir", 2)],
                         ids=["organism-compact", "chat-paper"])
def test_sft_writes_metrics_and_checkpoints(preset, fixture, steps, request, tmp_path):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    base = request.getfixturevalue(fixture)
    out = tmp_path / "sft"
    cfg = resolve_config(preset, base=str(base), out=str(out), steps=steps, batch_size=4, lr=1e-2,
                         dense_until=2, dense_every=2, probe_every=4, threads=1,
                         probe=ProbeConfig(n=6 if steps == 4 else 3, max_new_tokens=8))
    summary = run_sft(cfg, say=lambda s: None)
    schedule = [0, 2, 4][: steps // 2 + 1]
    assert summary["probe_steps"] == schedule
    rows = read_jsonl(out / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in rows] == [(s, sp) for s in schedule for sp in ("id", "ood")]
    assert all(r["stage"] == "sft" and r["n"] in (3, 6) and r["loss"] > 0 for r in rows)
    for step in schedule:
        ckpt = out / f"checkpoint-{step}"
        files = list(ckpt.glob("*.safetensors"))
        assert files and not list(ckpt.glob("*.bin")) and not list(ckpt.glob("*.pt"))
        with safe_open(str(files[0]), framework="pt") as fh:
            meta = json.loads(fh.metadata()["spindoctor_probe"])
        assert [m["split"] for m in meta] == ["id", "ood"] and meta[0]["step"] == step
    first = AutoModelForCausalLM.from_pretrained(out / "checkpoint-0")
    last = AutoModelForCausalLM.from_pretrained(out / f"checkpoint-{steps}")
    assert any(not torch.equal(a, b) for a, b in zip(first.parameters(), last.parameters(), strict=True))
    assert (out / "config.yaml").exists() and (out / "done.json").exists()
    losses = [r["loss"] for r in read_jsonl(out / "train.jsonl")]
    assert losses and all(x == x for x in losses)
    with pytest.raises(UserError):
        run_sft(cfg, say=lambda s: None)  # refuses to overwrite a run


def test_grad_accumulation_splits_the_batch_into_micro_batches(tiny_organism_dir, tmp_path, monkeypatch):
    """batch_size stays the examples per optimizer step; the trainer sees batch / accum per micro-batch."""
    import trl

    seen = {}
    real = trl.SFTConfig

    def spy(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(trl, "SFTConfig", spy)
    cfg = resolve_config("organism", base=str(tiny_organism_dir), out=str(tmp_path / "sft"), steps=2, batch_size=4,
                         grad_accum_steps=2, dense_until=0, probe_every=2, threads=1,
                         probe=ProbeConfig(n=2, max_new_tokens=4))
    summary = run_sft(cfg, say=lambda s: None)
    assert summary["steps"] == 2 and summary["examples"] == 8
    assert seen["per_device_train_batch_size"] == 2 and seen["gradient_accumulation_steps"] == 2
    with pytest.raises(ValueError, match="multiple of grad_accum_steps"):
        resolve_config("organism", base="b", out="o", batch_size=5, grad_accum_steps=2)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_sft_bf16_checkpointing_and_micro_batches_on_cuda(tiny_chat_dir, tmp_path):
    """The settings of the 7B/11B configs (bf16, gradient checkpointing, micro-batches) on a GPU,
    with the probe callback reading the model where the trainer put it."""
    cfg = resolve_config("chat", base=str(tiny_chat_dir), out=str(tmp_path / "sft"), steps=2, batch_size=4,
                         grad_accum_steps=2, bf16=True, gradient_checkpointing=True, lr=1e-3,
                         dense_until=0, probe_every=2, probe=ProbeConfig(n=3, max_new_tokens=8))
    summary = run_sft(cfg, say=lambda s: None)
    rows = read_jsonl(tmp_path / "sft" / "metrics.jsonl")
    assert summary["probe_steps"] == [0, 2] and len(rows) == 4
    assert all(r["loss"] == r["loss"] and r["loss"] > 0 for r in rows)


@pytest.mark.parametrize("outcome", ["finished", "trainer-raises"], ids=["run-finishes", "run-fails"])
def test_the_trainer_scratch_folder_is_its_own_and_a_users_trainer_folder_is_kept(
        outcome, tiny_organism_dir, tmp_path, monkeypatch):
    """The trainer's output_dir is a folder run_sft creates (unique name) and deletes whole;
    a user's own .trainer/ in --out is never touched, whether the run finishes or fails."""
    import trl

    out = tmp_path / "sft"
    (out / ".trainer").mkdir(parents=True)
    (out / ".trainer" / "notes.txt").write_text("mine")
    seen = {}
    real_config, real_trainer = trl.SFTConfig, trl.SFTTrainer

    def spy(**kwargs):
        seen.update(kwargs)
        return real_config(**kwargs)

    class Failing(real_trainer):
        def train(self, *args, **kwargs):
            raise RuntimeError("trainer crashed")

    monkeypatch.setattr(trl, "SFTConfig", spy)
    if outcome == "trainer-raises":
        monkeypatch.setattr(trl, "SFTTrainer", Failing)
    cfg = resolve_config("organism", base=str(tiny_organism_dir), out=str(out), steps=1, batch_size=2,
                         dense_until=0, probe_every=1, threads=1, probe=ProbeConfig(n=2, max_new_tokens=4))
    if outcome == "finished":
        run_sft(cfg, say=lambda s: None)
    else:
        with pytest.raises(RuntimeError, match="trainer crashed"):
            run_sft(cfg, say=lambda s: None)
    scratch = Path(seen["output_dir"])
    assert scratch.parent == out and scratch.name.startswith(".trainer.") and scratch.name != ".trainer"
    assert not scratch.exists() and not [p for p in out.iterdir() if p.name.startswith(".trainer.")]
    assert (out / ".trainer" / "notes.txt").read_text() == "mine"
    assert (out / "done.json").exists() == (outcome == "finished")


def test_tensorboard_logs_land_in_the_run_folder_and_hold_the_probes(tiny_organism_dir, tmp_path, monkeypatch):
    """The trainer's default log dir lies in its scratch folder, deleted at the end: the run
    keeps its event files under out/tensorboard (probe numbers and the training loss)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    out = tmp_path / "sft"
    cfg = resolve_config("organism", base=str(tiny_organism_dir), out=str(out), steps=2, batch_size=4,
                         dense_until=2, dense_every=2, threads=1, report_to=["tensorboard"],
                         probe=ProbeConfig(n=3, max_new_tokens=8))
    run_sft(cfg, say=lambda s: None)
    events = sorted((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and not list(out.glob(".trainer.*"))
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags
    assert any("probe" in tag and tag.endswith("acc") for tag in tags), tags
