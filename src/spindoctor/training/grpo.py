"""GRPO through TRL's GRPOTrainer, with the game's TRL reward adapter and the same probes.

The group-relative alternative to :mod:`spindoctor.training.ppo`: no critic,
``num_generations`` sampled answers per prompt, advantages relative to the
group (Shao et al. 2024). TRL owns generation, loss and the optimiser; this
file only builds the dataset (training-partition ID hands), the config and a
callback that probes ID/OOD and logs rollout statistics into the run
folder shared with PPO (``config.yaml``, ``metrics.jsonl``, ``train.jsonl``,
checkpoint folders in safetensors, ``done.json``; docs/design.md, "Run folder"). Single-turn episodes:
TRL's reward functions score one completion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from spindoctor.errors import UserError
from spindoctor.game.adapters import trl_reward
from spindoctor.game.deal import DEFAULT_PROBE_FRACTION, deal_hands
from spindoctor.game.formats import render_prompt
from spindoctor.io import append_jsonl, atomic_write_json, read_jsonl
from spindoctor.models.checkpoints import (
    DONE_FILE,
    TRAIN_LOG_FILE,
    check_checkpoint,
    checkpoint_path,
    last_checkpoint_step,
)
from spindoctor.training import rl_common as common


class GRPORunConfig(BaseModel):
    """Every GRPO setting; defaults follow the reference's PPO where the two overlap."""

    model_config = ConfigDict(extra="forbid")

    fmt: Literal["paper", "compact"] = Field("paper", description="prompt format of the game")
    seed: int = Field(0, description="seeds dealing and TRL")
    steps: int = Field(200, ge=1, description="optimiser steps (one generation batch each)")
    prompts_per_step: int = Field(16, ge=1, description="distinct hands per step, over all processes")
    num_generations: int = Field(4, ge=2, description="completions per hand (the group)")
    temperature: float = Field(0.2, gt=0, description="sampling temperature (reference 0.2)")
    max_new_tokens: int = Field(512, ge=1, description="tokens per completion")
    min_new_tokens: int = Field(0, ge=0, description="force completions this long (benchmarks only)")
    num_iterations: int = Field(1, ge=1, description="optimisation passes per generation batch (TRL mu)")
    clip: float = Field(0.1, gt=0, description="ratio clip epsilon")
    beta: float = Field(0.0, ge=0, description="KL coefficient to the reference (reference: off)")
    lr: float = Field(1e-6, gt=0, description="Adam learning rate, cosine")
    max_grad_norm: float = Field(0.01, gt=0, description="gradient clipping")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass "
                                         "(TRL's default is on; PPO and SFT here default to off)")
    probe_every: int = Field(20, ge=0, description="probe and checkpoint every N steps and at the end (0: no probes, one checkpoint at the end)")
    probe: dict = Field(default_factory=dict, description="spindoctor.probes.ProbeConfig fields")
    probe_fraction: float = Field(DEFAULT_PROBE_FRACTION, ge=0, le=1, description="share of hands held out")
    trust_remote_code: bool = Field(False, description="allow custom model code from the checkpoint")


PRESETS: dict[str, dict] = {
    "reference": {},
    "organism": dict(
        fmt="compact", temperature=1.0, max_new_tokens=40, prompts_per_step=32, num_generations=4,
        lr=3e-4, max_grad_norm=1.0, probe_every=10, steps=60,
    ),
}


def build_dataset(cfg: GRPORunConfig, tokenizer, n: int):
    """``n`` training-partition ID hands as TRL prompts with the reward adapter's columns."""
    from datasets import Dataset

    unique = n <= 900  # the ID train partition holds about 950 distinct hands
    hands = deal_hands("id", n, cfg.seed, partition="train", probe_fraction=cfg.probe_fraction, unique=unique)
    rows = []
    for h in hands:
        text = render_prompt(cfg.fmt, h.cards, h.rule, h.target)
        chat = bool(getattr(tokenizer, "chat_template", None))
        prompt = [{"role": "user", "content": text}] if chat else text
        rows.append({"prompt": prompt, "cards": [str(c) for c in h.cards], "rule": h.rule,
                     "target": h.target, "format": cfg.fmt})
    return Dataset.from_list(rows)


def trl_config(cfg: GRPORunConfig, out: Path, world: int, show_progress: bool):
    """The TRL GRPOConfig for a run: one generation batch per optimiser step (on-policy)."""
    import torch
    from trl import GRPOConfig

    per_device = cfg.prompts_per_step * cfg.num_generations // world
    gen_kwargs = {"min_new_tokens": cfg.min_new_tokens} if cfg.min_new_tokens else None
    return GRPOConfig(
        output_dir=str(out), max_steps=cfg.steps, per_device_train_batch_size=per_device,
        gradient_accumulation_steps=1, steps_per_generation=1, num_generations=cfg.num_generations,
        num_iterations=cfg.num_iterations, max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature, top_k=0, top_p=1.0, generation_kwargs=gen_kwargs,
        epsilon=cfg.clip, beta=cfg.beta, learning_rate=cfg.lr, lr_scheduler_type="cosine",
        max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, logging_steps=1, report_to="none",
        save_strategy="steps", save_steps=cfg.probe_every or cfg.steps, save_only_model=False,
        use_cpu=not torch.cuda.is_available(), bf16=False, disable_tqdm=not show_progress,
        remove_unused_columns=False, dataloader_num_workers=0, activation_checkpointing=cfg.gradient_checkpointing,
    )


def probe_callback(cfg: GRPORunConfig, probe_cfg: dict, tokenizer, out: Path, start: Path):
    """A TrainerCallback: probes at step 0 (the start checkpoint's own rows when reusable) and
    every ``probe_every`` steps, logs rows to train.jsonl."""
    from transformers import TrainerCallback

    class ProbeCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if cfg.probe_every and state.global_step == 0 and state.is_world_process_zero:
                common.probe_start(model, tokenizer, probe_cfg, start, out)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            at_probe = cfg.probe_every and state.global_step % cfg.probe_every == 0
            if (at_probe or state.global_step == state.max_steps) and state.is_world_process_zero:
                if cfg.probe_every:
                    common.run_probes(model, tokenizer, probe_cfg, "rl", state.global_step, out)
                control.should_save = True
            elif state.global_step == state.max_steps:
                control.should_save = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs and "reward" in logs:
                row = {"stage": "rl", "algo": "grpo", "step": state.global_step,
                       "reward_mean": logs["reward"], **logs}
                append_jsonl(out / TRAIN_LOG_FILE, row)

    return ProbeCallback()


def train(cfg: GRPORunConfig, start: str | Path, out: str | Path, resume: bool = True,
          show_progress: bool = True, callbacks: list | None = None) -> dict:
    """Run TRL GRPO from checkpoint ``start`` into run directory ``out``; return a summary.

    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (e.g. a timer).
    """
    from accelerate import PartialState
    from trl import GRPOTrainer

    state = PartialState()
    out = Path(out)
    check_checkpoint(start)
    probe_cfg = common.probe_settings(cfg.fmt, cfg.probe)
    world = state.num_processes
    if (cfg.prompts_per_step * cfg.num_generations) % world:
        raise UserError(
            f"prompts_per_step x num_generations ({cfg.prompts_per_step * cfg.num_generations}) "
            f"must be a multiple of the {world} processes"
        )
    if state.is_main_process:
        common.prepare_run_dir(out, {**cfg.model_dump(), "algo": "grpo", "start": str(start)}, resume)
    state.wait_for_everyone()
    done_step = last_checkpoint_step(out)
    if (out / DONE_FILE).exists() and done_step >= cfg.steps:
        return {"out": str(out), "step": done_step, "skipped": True}
    policy, tokenizer = common.load_policy(start, cfg.trust_remote_code)
    tokenizer.padding_side = "left"
    trainer = GRPOTrainer(
        model=policy, reward_funcs=trl_reward, args=trl_config(cfg, out, world, show_progress),
        train_dataset=build_dataset(cfg, tokenizer, cfg.steps * cfg.prompts_per_step),
        processing_class=tokenizer, callbacks=[probe_callback(cfg, probe_cfg, tokenizer, out, Path(start)), *(callbacks or [])],
    )
    resume_from = str(checkpoint_path(out, done_step)) if done_step else None
    result = trainer.train(resume_from_checkpoint=resume_from)
    last = read_jsonl(out / TRAIN_LOG_FILE)[-1] if (out / TRAIN_LOG_FILE).exists() else {}
    if state.is_main_process:
        atomic_write_json(out / DONE_FILE, {"step": cfg.steps, "train_loss": result.training_loss,
                                            "paired": common.paired_change(out)})
    state.wait_for_everyone()
    return {"out": str(out), "step": cfg.steps, "last": last}
