"""PPO on a tiny random LlamaForCausalLM: parameters move, losses stay finite, a toy reward is
learned, multi-turn episodes chain their turns, and an interrupted run resumes exactly."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from spindoctor.errors import UserError
from spindoctor.game.deal import deal_hands
from spindoctor.io import append_jsonl, read_jsonl
from spindoctor.training import rl_common
from spindoctor.training.ppo import (
    PolicyAndValue,
    PPOConfig,
    collate,
    game_reward,
    rollout,
    token_logp_and_values,
    train,
)

TINY = dict(
    fmt="compact", max_turns=1, temperature=1.0, max_new_tokens=12, episodes_per_step=8, epochs=2,
    minibatches=2, grad_accum_steps=2, lr=1e-3, max_grad_norm=1.0, probe_every=0,
)


@pytest.fixture
def fake_probes(monkeypatch):
    """Record probe calls instead of probing (the probes have their own tests)."""
    calls = []

    def record(model, tokenizer, probe_cfg, stage, step, out):
        calls.append(step)
        append_jsonl(out / "metrics.jsonl", {"stage": stage, "step": step, "split": "id"})
        return []

    monkeypatch.setattr(rl_common, "run_probes", record)
    return calls


def test_ppo_steps_change_parameters_and_keep_losses_finite(tiny_ckpt, tmp_path):
    summary = train(PPOConfig(**TINY, steps=2), tiny_ckpt, tmp_path / "run", show_progress=False)
    rows = read_jsonl(tmp_path / "run" / "train.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for key in ("pg_loss", "v_loss", "grad_norm", "reward_mean"):
            assert math.isfinite(row[key]), (key, row)
        assert row["samples"] == 8
    ckpt = tmp_path / "run" / "checkpoint-2"
    start, end = load_file(str(tiny_ckpt / "model.safetensors")), load_file(str(ckpt / "model.safetensors"))
    assert any(not torch.equal(start[k], end[k]) for k in start)
    assert {p.name for p in ckpt.iterdir()} >= {"model.safetensors", "value_head.safetensors", "optimizer.safetensors"}
    assert not list(ckpt.glob("*.bin")) and not list(ckpt.glob("*.pt"))
    head = load_file(str(ckpt / "value_head.safetensors"))
    assert [tuple(v.shape) for k, v in sorted(head.items()) if k.endswith("weight")] == [(8, 32), (4, 8), (1, 4)]
    assert summary["replica_max_abs_diff"] == 0.0


@pytest.mark.parametrize("warmup, policy_moves", [(0, True), (2, False)], ids=["no-warmup", "value-warmup"])
def test_value_warmup_trains_the_value_head_alone(tiny_ckpt, tmp_path, warmup, policy_moves):
    train(PPOConfig(**TINY, steps=2, value_warmup_steps=warmup), tiny_ckpt, tmp_path / "run", show_progress=False)
    ckpt = tmp_path / "run" / "checkpoint-2"
    start, end = load_file(str(tiny_ckpt / "model.safetensors")), load_file(str(ckpt / "model.safetensors"))
    assert any(not torch.equal(start[k], end[k]) for k in start) is policy_moves
    torch.manual_seed(0)  # as train() does before building the value head
    head_init = PolicyAndValue(rl_common.load_policy(tiny_ckpt)[0]).value_head.state_dict()
    head = load_file(str(ckpt / "value_head.safetensors"))
    assert head.keys() == head_init.keys()
    assert any(not torch.equal(head_init[k], head[k]) for k in head)  # the value head learns either way


def test_kl_penalty_to_the_frozen_start_model(tiny_ckpt, tmp_path):
    train(PPOConfig(**TINY, steps=1, kl_coef=0.1), tiny_ckpt, tmp_path / "kl", show_progress=False)
    (row,) = read_jsonl(tmp_path / "kl" / "train.jsonl")
    # 0 on the first micro-batch (policy == reference), > 0 once the policy has moved
    assert math.isfinite(row["kl_ref"]) and row["kl_ref"] > 0


def test_toy_reward_rises_within_ten_steps(tiny_ckpt, tmp_path):
    def share_of_ones(hand, text):  # trivially learnable: write the character "1"
        return text.count("1") / max(1, len(text)), False, ""

    # one update per rollout: the loss uses its own detached log-probs (no scoring pass)
    cfg = PPOConfig(**{**TINY, "max_new_tokens": 6, "min_new_tokens": 6, "episodes_per_step": 32,
                       "epochs": 1, "minibatches": 1, "grad_accum_steps": 2, "lr": 2e-2, "steps": 10})
    train(cfg, tiny_ckpt, tmp_path / "toy", reward_fn=share_of_ones, show_progress=False)
    rewards = [r["reward_mean"] for r in read_jsonl(tmp_path / "toy" / "train.jsonl")]
    assert len(rewards) == 10
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 0.1, rewards


def test_multi_turn_episodes_chain_their_turns(tiny_ckpt):
    policy, tokenizer = rl_common.load_policy(tiny_ckpt)
    hands = deal_hands("id", 4, 0, partition="train")
    torch.manual_seed(0)
    cfg = PPOConfig(**{**TINY, "max_turns": 3, "max_new_tokens": 8})
    transitions, success = rollout(policy, tokenizer, hands, cfg, game_reward("compact"))
    assert not any(success)  # a random model does not make 24
    by_episode = {}
    for t in transitions:
        by_episode.setdefault(t.episode, []).append(t)
    assert sorted(by_episode) == [0, 1, 2, 3]
    for turns in by_episode.values():
        assert [t.turn for t in turns] == [0, 1, 2]
        for before, after in zip(turns, turns[1:], strict=False):
            # the next state is the previous state, its answer (as text) and a feedback turn
            said = tokenizer.decode(before.prompt_ids) + tokenizer.decode(before.response_ids, skip_special_tokens=True)
            assert tokenizer.decode(after.prompt_ids).startswith(said)
            assert len(tokenizer.decode(after.prompt_ids)) > len(said)
        assert all(t.reward < 5 for t in turns)  # no turn was correct


def test_values_read_during_generation_match_the_training_forward(tiny_ckpt):
    policy, tokenizer = rl_common.load_policy(tiny_ckpt)
    model = PolicyAndValue(policy).eval()
    hands = deal_hands("id", 6, 1, partition="train")  # "10" and "J" make prompts of unequal length
    torch.manual_seed(0)
    cfg = PPOConfig(**TINY)
    transitions, _ = rollout(policy, tokenizer, hands, cfg, game_reward("compact"), model.value_head)
    assert len({len(t.prompt_ids) for t in transitions}) > 1
    batch = collate(transitions, tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        _, values = token_logp_and_values(model, batch, cfg.temperature)
    assert values.tolist() == pytest.approx([t.value_old for t in transitions], abs=1e-5)


def test_probes_land_in_metrics_jsonl(tiny_ckpt, tmp_path):
    cfg = PPOConfig(**{**TINY, "steps": 1, "probe_every": 1, "probe": {"n": 4, "batch_size": 4}})
    train(cfg, tiny_ckpt, tmp_path / "run", show_progress=False)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [(r["stage"], r["step"], r["split"]) for r in rows] == [
        ("rl", 0, "id"), ("rl", 0, "ood"), ("rl", 1, "id"), ("rl", 1, "ood")]
    assert all(r["n"] == 4 and 0.0 <= r["acc"] <= 1.0 and math.isfinite(r["loss"]) for r in rows)
    # done.json pairs the last probe with step 0 hand by hand (the RL stage's evidence)
    paired = json.loads((tmp_path / "run" / "done.json").read_text())["paired"]
    assert set(paired) == {"id", "ood"}
    for split in ("id", "ood"):
        at = {r["step"]: r for r in rows if r["split"] == split}
        want = (sum(at[1]["per_hand"]["reward"]) - sum(at[0]["per_hand"]["reward"])) / 4
        assert paired[split]["n"] == 4 and paired[split]["reward"]["estimate"] == pytest.approx(want)
        assert paired[split]["acc"]["estimate"] == pytest.approx(at[1]["acc"] - at[0]["acc"])


def test_resume_after_interruption_repeats_the_run(tiny_ckpt, tmp_path, fake_probes):
    cfg = PPOConfig(**{**TINY, "probe_every": 1, "steps": 3})
    out = tmp_path / "run"
    train(cfg, tiny_ckpt, out, show_progress=False)
    assert fake_probes == [0, 1, 2, 3]
    whole = load_file(str(out / "checkpoint-3" / "model.safetensors"))
    # Interrupt after step 3 logged but before its checkpoint landed.
    shutil.rmtree(out / "checkpoint-3")
    (out / "done.json").unlink()
    train(cfg, tiny_ckpt, out, show_progress=False)
    resumed = load_file(str(out / "checkpoint-3" / "model.safetensors"))
    assert all(torch.allclose(whole[k], resumed[k], atol=1e-6) for k in whole)
    assert [r["step"] for r in read_jsonl(out / "train.jsonl")] == [1, 2, 3]
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2, 3]
    with pytest.raises(UserError, match="different config"):
        train(PPOConfig(**{**TINY, "probe_every": 1, "steps": 3, "lr": 0.5}), tiny_ckpt, out, show_progress=False)


@pytest.mark.parametrize(
    "fields, message",
    [({"episodes_per_step": 2}, "episodes-per-step"), ({"steps": 1}, "checkpoint folder not found")],
    ids=["too-few-episodes", "missing-checkpoint"],
)
def test_bad_input_is_a_user_error(tiny_ckpt, tmp_path, fields, message):
    start = tiny_ckpt if "episodes_per_step" in fields else tmp_path / "nope"
    with pytest.raises(UserError, match=message):
        train(PPOConfig(**{**TINY, **fields}), start, tmp_path / "run", show_progress=False)


@pytest.mark.parametrize("saved_n, saved_dtype, reused", [(4, None, True), (6, None, False), (4, "torch.bfloat16", False)],
                         ids=["same-probe-config", "other-n", "other-dtype"])
def test_step_zero_reuses_the_start_checkpoints_probe_rows_only_when_configs_match(
        tiny_ckpt, tmp_path, saved_n, saved_dtype, reused):
    """RL step 0 is the start checkpoint: its SFT probe rows are copied when they were made
    with the same resolved ProbeConfig, and then they equal what a fresh probe measures."""
    import json

    from spindoctor.models.load import load_causal_lm
    from spindoctor.probes import ProbeConfig, metrics_row, probe_model

    start = tmp_path / "checkpoint-7"
    shutil.copytree(tiny_ckpt, start)
    probe = {"n": 4, "batch_size": 4}
    saved_cfg = ProbeConfig(fmt="compact", **{**probe, "n": saved_n})
    model, tok = load_causal_lm(start)
    saved_rows = [metrics_row("sft", 7, r) for r in probe_model(model, tok, saved_cfg).values()]
    (start / "probe.json").write_text(json.dumps(
        {"step": 7, "rows": saved_rows, "probe_config": saved_cfg.model_dump(mode="json"),
         "model_dtype": saved_dtype or str(next(model.parameters()).dtype)}))
    cfg = PPOConfig(**{**TINY, "steps": 1, "probe_every": 1, "probe": probe})
    train(cfg, start, tmp_path / "run", show_progress=False)
    step0 = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["step"] == 0]
    assert [r["split"] for r in step0] == ["id", "ood"]
    assert all(("reused_from" in r) == reused and r["stage"] == "rl" and r["n"] == 4 for r in step0)
    fresh = probe_model(model, tok, ProbeConfig(fmt="compact", **probe))
    for row in step0:
        assert row["acc"] == fresh[row["split"]].acc
        assert row["loss"] == pytest.approx(fresh[row["split"]].loss, rel=1e-5)


def test_train_rows_log_explained_variance_beside_clip_fraction_and_kl(tiny_ckpt, tmp_path):
    train(PPOConfig(**TINY, steps=1), tiny_ckpt, tmp_path / "run", show_progress=False)
    row = read_jsonl(tmp_path / "run" / "train.jsonl")[0]
    assert {"clipfrac", "approx_kl", "explained_variance"} <= set(row)
    ev = row["explained_variance"]
    assert ev is None or (math.isfinite(ev) and ev <= 1.0)
