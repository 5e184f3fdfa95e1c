"""GRPO through TRL on a tiny random model: a few steps run on a CPU, in the shared run layout."""

from __future__ import annotations

import math
import warnings

import pytest
from safetensors.torch import load_file

from spindoctor.io import read_jsonl
from spindoctor.training.grpo import GRPORunConfig, train, trl_config


def test_grpo_runs_a_few_steps(tiny_ckpt, tmp_path):
    cfg = GRPORunConfig(fmt="compact", steps=2, prompts_per_step=4, num_generations=2, temperature=1.0,
                        max_new_tokens=8, lr=1e-3, max_grad_norm=1.0, probe_every=2,
                        probe={"n": 4, "batch_size": 4})
    out = tmp_path / "grpo"
    summary = train(cfg, tiny_ckpt, out, show_progress=False)
    rows = read_jsonl(out / "train.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["reward_mean"]) and -5.0 <= r["reward_mean"] <= 5.0 for r in rows)
    assert summary["step"] == 2 and (out / "done.json").exists() and (out / "config.yaml").exists()
    start = load_file(str(tiny_ckpt / "model.safetensors"))
    end = load_file(str(out / "checkpoint-2" / "model.safetensors"))
    assert set(start) == set(end)
    assert any(not (start[k] == end[k]).all() for k in start)
    probes = read_jsonl(out / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in probes] == [(0, "id"), (0, "ood"), (2, "id"), (2, "ood")]
    # a finished run is not repeated; a longer one resumes from the last checkpoint
    assert train(cfg, tiny_ckpt, out, show_progress=False).get("skipped") is True
    train(cfg.model_copy(update={"steps": 3}), tiny_ckpt, out, show_progress=False)
    assert [r["step"] for r in read_jsonl(out / "train.jsonl")] == [1, 2, 3]
    assert (out / "checkpoint-3" / "model.safetensors").exists()



@pytest.mark.parametrize("wanted", [False, True], ids=["off-by-default", "on-when-asked"])
def test_activation_checkpointing_is_ours_to_choose(wanted, tmp_path):
    cfg = GRPORunConfig(gradient_checkpointing=True) if wanted else GRPORunConfig()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated-name warning from transformers
        args = trl_config(cfg, tmp_path, 1, False)
    assert args.activation_checkpointing is wanted and args.gradient_checkpointing is wanted
