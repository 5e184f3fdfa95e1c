"""Every knob of PPO (``spindoctor rl --algo ppo``) and its presets: the config of
:mod:`spindoctor.training.ppo`, kept apart so that validating a config (the study
does it at startup) needs no torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spindoctor.game.deal import DEFAULT_PROBE_FRACTION


class PPOConfig(BaseModel):
    """Every PPO setting; defaults are the reference's (real models, GPUs)."""

    model_config = ConfigDict(extra="forbid")

    fmt: Literal["paper", "compact"] = Field("paper", description="prompt format of the game")
    seed: int = Field(0, description="seeds dealing, sampling and the value-head init")
    steps: int = Field(200, ge=1, description="PPO iterations (rollout + update)")
    episodes_per_step: int = Field(64, ge=1, description="episodes per iteration, over all processes")
    max_turns: int = Field(5, ge=1, description="verified attempts per episode (reference 5; 1 = single turn)")
    temperature: float = Field(0.2, gt=0, description="sampling temperature of rollouts (reference 0.2)")
    max_new_tokens: int = Field(512, ge=1, description="tokens per response (reference 512)")
    min_new_tokens: int = Field(0, ge=0, description="force responses this long (benchmarks only)")
    gamma: float = Field(0.9, ge=0, le=1, description="discount per turn")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    clip: float = Field(0.1, gt=0, description="policy ratio clip")
    value_clip: float = Field(0.1, gt=0, description="value clip")
    vf_coef: float = Field(0.5, ge=0, description="value loss coefficient")
    kl_coef: float = Field(0.0, ge=0, description="KL penalty to the frozen start model (reference: off)")
    prefix_weight: float = Field(0.5, ge=0, description="weight of log-probs of tokens before the formula")
    whiten_advantages: bool = Field(True, description="normalise advantages over the buffer")
    epochs: int = Field(4, ge=1, description="passes over each rollout buffer")
    minibatches: int = Field(2, ge=1, description="optimiser steps per epoch")
    grad_accum_steps: int = Field(16, ge=1, description="micro-batches accumulated per optimiser step")
    lr: float = Field(1e-6, gt=0, description="Adam learning rate, cosine to lr_floor")
    lr_floor: float = Field(0.0, ge=0, description="learning rate at the last step")
    warmup_steps: int = Field(0, ge=0, description="optimiser steps of linear warm-up")
    value_warmup_steps: int = Field(
        0, ge=0, description="first PPO iterations that train only the value head (the policy's lr is 0)"
    )
    max_grad_norm: float = Field(0.01, gt=0, description="gradient clipping (reference 0.01)")
    probe_every: int = Field(20, ge=0, description="probe and checkpoint every N steps and at the end (0: no probes, one checkpoint at the end)")
    probe: dict = Field(default_factory=dict, description="spindoctor.probes.ProbeConfig fields")
    probe_fraction: float = Field(DEFAULT_PROBE_FRACTION, ge=0, le=1, description="share of hands held out for probes")
    trust_remote_code: bool = Field(False, description="allow custom model code from the checkpoint")

    @model_validator(mode="after")
    def _check(self) -> PPOConfig:
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError("min_new_tokens must be <= max_new_tokens")
        return self

    @property
    def single_update(self) -> bool:
        """One optimiser step per rollout: the policy that sampled is the one being updated."""
        return self.epochs == 1 and self.minibatches == 1


# Organism preset: a 1M-parameter character-level model on a CPU. Measured on a
# stand-in SFT checkpoint (README, RL): one update per rollout of 128 single-turn
# episodes at lr 3e-4 raised the sampled reward within ~20 steps, while 2 epochs x
# 2 minibatches clipped half the actions (lr 3e-4) or did not move (lr 3e-5).
# Rollout temperature 0.5 (docs/design.md, "RL"): from a 400-step organism SFT end
# (greedy ID 29.2%, 500 probe hands, paired), 60 steps raised greedy ID by +8.8 and
# +8.4 points (PPO seeds 0, 1; 4.5 SE each) at temperature 0.5, by +5.6 at 1.0;
# 20 steps at 1.0 (the old study setting) gave +1.2 (not significant); lr 6e-4 lost ID.
# 120 steps (docs/organism-ablation.md): from the lr-5e-4 SFT end of base seed 0, 60 steps gave
# +1.8 and 120 steps +8.6 points; from the lr-1e-3 SFT end +4.2 at 60 and +7.2 at 120; a value-head
# warm-up (5 iterations) or an lr warm-up (10) did not help. From the SFT end of study seed 2, 120
# steps gave +1.8 (n.s.); 240 steps +10.6 (the study runs 240, probes every 80).
PRESETS: dict[str, dict] = {
    "reference": {},
    "organism": dict(
        fmt="compact", max_turns=1, temperature=0.5, max_new_tokens=40, episodes_per_step=128,
        epochs=1, minibatches=1, grad_accum_steps=1, lr=3e-4, lr_floor=3e-5, max_grad_norm=1.0,
        probe_every=40, steps=240,
    ),
}
