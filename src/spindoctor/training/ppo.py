"""PPO with a value head, the paper's RL stage, in one file (CleanRL ppo.py style).

Top to bottom: setup, rollout (episodes + reward), batches, advantage, loss,
update, checkpoint, logging, the loop. Config and presets:
:mod:`~spindoctor.training.ppo_config`; pure maths: :mod:`~spindoctor.training.rl_math`;
what GRPO shares (loading, run folder, probes): :mod:`~spindoctor.training.rl_common`.

The reference settings (docs/design.md, "RL"): one response is one action whose
log-probability sums its tokens (those before the formula weighted 0.5); a
value head h -> h/4 -> h/8 -> 1 on the last prompt token's final hidden state;
GAE over the turns of a 5-turn revision episode (gamma 0.9, lambda 0.95);
advantages whitened over the buffer; clip 0.1 (policy and value); value
coefficient 0.5; 4 epochs; max grad norm 0.01; Adam 1e-6 cosine; no KL; rollouts
at temperature 0.2. Under ``accelerate launch`` (DDP) each process plays
``episodes_per_step / N`` episodes; statistics are summed over processes.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from spindoctor.errors import UserError
from spindoctor.game.deal import Hand, deal_hands
from spindoctor.game.formats import render_prompt
from spindoctor.io import append_jsonl, atomic_write_json
from spindoctor.models import checkpoints as ckpt
from spindoctor.models.generate import sample_responses, token_end_offsets
from spindoctor.training import rl_common as common
from spindoctor.training.ppo_config import PPOConfig
from spindoctor.training.rl_common import RewardFn, game_reward
from spindoctor.training.rl_math import (
    action_logprob,
    clipped_policy_loss,
    clipped_value_loss,
    cosine_lr,
    explained_variance_from_moments,
    formula_start,
    gae,
    kl_to_reference,
    mean_var_from_moments,
    prefix_token_weights,
    whiten,
)

VALUE_HEAD = "value_head.safetensors"


# ---------------------------------------------------------------- setup
class PolicyAndValue(nn.Module):
    """A causal LM and its value head (h -> h/4 -> h/8 -> 1) on the last prompt token."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        h = policy.config.hidden_size
        self.policy = policy
        self.value_head = nn.Sequential(
            nn.Linear(h, max(1, h // 4)), nn.ReLU(), nn.Linear(max(1, h // 4), max(1, h // 8)),
            nn.ReLU(), nn.Linear(max(1, h // 8), 1),
        )

    def forward(self, input_ids, attention_mask, n_response: int):
        """Logits that predict the last ``n_response`` tokens (B, R, V) and values (B,)."""
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.policy(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
            output_hidden_states=True, logits_to_keep=n_response + 1,
        )
        last_prompt = input_ids.shape[1] - n_response - 1
        values = self.value_head(out.hidden_states[-1][:, last_prompt].float()).squeeze(-1)
        return out.logits[:, :-1].float(), values


@dataclass
class Transition:
    """One turn of one episode: state (prompt), action (response) and what PPO needs of it."""

    prompt_ids: list[int]
    response_ids: list[int]
    weights: list[float]
    episode: int
    turn: int
    reward: float
    logp_old: float = 0.0
    value_old: float = 0.0
    ref_logp: list[float] | None = None
    advantage: float = 0.0
    ret: float = 0.0


# ---------------------------------------------------------------- rollout
@torch.no_grad()
def sample(policy, tokenizer, texts: list[str], cfg: PPOConfig, value_head: nn.Module | None = None):
    """One sampled response per prompt (ids up to the first EOS) and, with a ``value_head``, each
    prompt's value, read from the prefill's last prompt state (no extra forward pass)."""
    prompts, responses, state = sample_responses(
        policy, tokenizer, texts, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
        min_new_tokens=cfg.min_new_tokens, last_prompt_state=value_head is not None)
    return prompts, responses, value_head(state.float()).squeeze(-1).tolist() if state is not None else [0.0] * len(texts)


def rollout(policy, tokenizer, hands: list[Hand], cfg: PPOConfig, reward_fn: RewardFn, value_head=None):
    """Play one revision episode per hand, all hands batched turn by turn.

    Follows ``spindoctor.game.episodes.run_episode``: after a failed attempt the
    answer and ``You failed this trial because ...`` are appended; an episode
    ends at its first correct answer or after ``max_turns`` attempts.
    """
    convs = [[{"role": "user", "content": render_prompt(cfg.fmt, h.cards, h.rule, h.target)}] for h in hands]
    success = [False] * len(hands)
    transitions: list[Transition] = []
    active = list(range(len(hands)))
    for turn in range(cfg.max_turns):
        texts = [common.render_state(tokenizer, convs[i]) for i in active]
        prompts, responses, values = sample(policy, tokenizer, texts, cfg, value_head)
        still = []
        for i, p_ids, r_ids, value in zip(active, prompts, responses, values, strict=True):
            text = tokenizer.decode(r_ids, skip_special_tokens=True)
            reward, correct, feedback = reward_fn(hands[i], text)
            ends = token_end_offsets(tokenizer, r_ids)
            weights = prefix_token_weights(ends, formula_start(cfg.fmt, text), cfg.prefix_weight)
            transitions.append(Transition(p_ids, r_ids, weights, i, turn, float(reward), value_old=value))
            convs[i].append({"role": "assistant", "content": text})
            success[i] = success[i] or correct
            if not correct and turn < cfg.max_turns - 1:
                convs[i].append({"role": "user", "content": feedback})
                still.append(i)
        active = still
        if not active:
            break
    return transitions, success


# ---------------------------------------------------------------- batches
def collate(batch: list, pad_id: int, device) -> dict:
    """Tensors of a batch of PPO transitions: prompts left-padded and responses right-padded,
    so every prompt ends in the same column (where the value head reads)."""

    p_len = max(len(t.prompt_ids) for t in batch)
    r_len = max(len(t.response_ids) for t in batch)
    ids, attn, resp, weights, mask, ref = [], [], [], [], [], []
    for t in batch:
        p_pad, r_pad = p_len - len(t.prompt_ids), r_len - len(t.response_ids)
        ids.append([pad_id] * p_pad + t.prompt_ids + t.response_ids + [pad_id] * r_pad)
        attn.append([0] * p_pad + [1] * (len(t.prompt_ids) + len(t.response_ids)) + [0] * r_pad)
        resp.append(t.response_ids + [pad_id] * r_pad)
        weights.append(t.weights + [0.0] * r_pad)
        mask.append([1.0] * len(t.response_ids) + [0.0] * r_pad)
        ref.append((t.ref_logp or [0.0] * len(t.response_ids)) + [0.0] * r_pad)
    out = {"input_ids": ids, "attention_mask": attn, "response_ids": resp}
    tensors = {k: torch.tensor(v, device=device) for k, v in out.items()}
    for name, rows in (("weights", weights), ("mask", mask), ("ref_logp", ref)):
        tensors[name] = torch.tensor(rows, dtype=torch.float32, device=device)
    for name in ("logp_old", "value_old", "advantage", "ret"):
        tensors[name] = torch.tensor([getattr(t, name) for t in batch], dtype=torch.float32, device=device)
    return tensors


def token_logp_and_values(model, batch: dict, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, R) log-probabilities of the response tokens (0 on padding) and (B,) values."""
    logits, values = model(batch["input_ids"], batch["attention_mask"], batch["response_ids"].shape[1])
    logp = torch.log_softmax(logits / temperature, dim=-1)
    token_logp = logp.gather(-1, batch["response_ids"].unsqueeze(-1)).squeeze(-1)
    return token_logp * batch["mask"], values


@torch.no_grad()
def score_buffer(model, ref_policy, transitions: list[Transition], pad_id: int, cfg: PPOConfig, device) -> None:
    """Fill the rollout policy's action log-probs (and the frozen reference's token log-probs).

    With one update per rollout (``epochs = minibatches = 1``) the policy is
    still the rollout policy when the loss is taken, so the loss uses its own
    detached log-probs and this pass is skipped (as TRL GRPO does with
    ``num_iterations=1``).
    """
    if cfg.single_update and ref_policy is None:
        return
    chunk = max(1, -(-len(transitions) // (cfg.minibatches * cfg.grad_accum_steps)))
    for start in range(0, len(transitions), chunk):
        part = transitions[start : start + chunk]
        batch = collate(part, pad_id, device)
        token_logp, _ = token_logp_and_values(model, batch, cfg.temperature)
        logp = action_logprob(token_logp, batch["weights"])
        ref = token_logp_and_values(ref_policy, batch, cfg.temperature)[0] if ref_policy is not None else None
        for k, t in enumerate(part):
            t.logp_old = float(logp[k])
            if ref is not None:
                t.ref_logp = ref[k, : len(t.response_ids)].tolist()


# ---------------------------------------------------------------- advantage
def assign_advantages(transitions: list[Transition], cfg: PPOConfig, accelerator) -> None:
    """GAE over the turns of each episode, then whitening over the buffer of every process."""
    n_eps = max(t.episode for t in transitions) + 1
    shape = (n_eps, cfg.max_turns)
    rewards, values, mask = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape)
    for t in transitions:
        rewards[t.episode, t.turn], values[t.episode, t.turn], mask[t.episode, t.turn] = t.reward, t.value_old, 1
    adv, ret = gae(rewards, values, mask, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        flat = adv[mask.bool()].double()
        n, total, total_sq = common.sum_over_processes(accelerator, [flat.numel(), flat.sum(), (flat**2).sum()])
        mean, var = mean_var_from_moments(n, total, total_sq)
        adv = whiten(adv, mask, mean, var)
    for t in transitions:
        t.advantage, t.ret = float(adv[t.episode, t.turn]), float(ret[t.episode, t.turn])


def value_explained_variance(transitions: list[Transition], accelerator) -> float | None:
    """How much of the returns' variance the rollout's value predictions explain, over
    every process's buffer (:func:`~spindoctor.training.rl_math.explained_variance_from_moments`)."""
    ret = torch.tensor([t.ret for t in transitions], dtype=torch.float64)
    err = ret - torch.tensor([t.value_old for t in transitions], dtype=torch.float64)
    sums = [len(transitions), ret.sum(), err.sum(), (ret**2).sum(), (err**2).sum()]
    n, s_ret, s_err, sq_ret, sq_err = common.sum_over_processes(accelerator, sums)
    return explained_variance_from_moments(n, (s_ret, s_err), (sq_ret, sq_err))


# ---------------------------------------------------------------- loss and update step
def ppo_loss(model, batch: dict, cfg: PPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped policy loss + vf_coef * clipped value loss (+ kl_coef * KL to the reference)."""
    token_logp, values = token_logp_and_values(model, batch, cfg.temperature)
    logp = action_logprob(token_logp, batch["weights"])
    logp_old = logp.detach() if cfg.single_update else batch["logp_old"]
    pg_loss, stats = clipped_policy_loss(logp, logp_old, batch["advantage"], cfg.clip)
    v_loss = clipped_value_loss(values, batch["value_old"], batch["ret"], cfg.value_clip)
    loss = pg_loss + cfg.vf_coef * v_loss
    kl = torch.zeros(())
    if cfg.kl_coef > 0:
        kl = kl_to_reference(token_logp, batch["ref_logp"], batch["mask"])
        loss = loss + cfg.kl_coef * kl
    out = {"pg_loss": pg_loss.item(), "v_loss": v_loss.item(), "kl_ref": kl.item()}
    out.update({k: v.item() for k, v in stats.items()})
    return loss, out


def param_groups(model: PolicyAndValue) -> list[dict]:
    """Two optimiser groups, ``policy`` first and ``value`` second, so that the first
    ``value_warmup_steps`` iterations can train the value head alone (docs/design.md, "RL")."""
    return [{"params": list(model.policy.parameters()), "name": "policy"},
            {"params": list(model.value_head.parameters()), "name": "value"}]


def ppo_update(model, optimizer, accelerator, transitions, cfg: PPOConfig, step: int, opt_step: int, pad_id: int):
    """``epochs`` passes of ``minibatches`` optimiser steps, each over ``grad_accum_steps`` micro-batches.

    Every process makes the same number of backward passes (DDP needs it),
    whatever the size of its buffer.
    """
    total_opt = cfg.steps * cfg.epochs * cfg.minibatches
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    logs: dict[str, list[float]] = {}
    for _ in range(cfg.epochs):
        chunks = torch.tensor_split(torch.randperm(len(transitions), generator=gen), cfg.minibatches * cfg.grad_accum_steps)
        for mb in range(cfg.minibatches):
            for k in range(cfg.grad_accum_steps):
                idx = chunks[mb * cfg.grad_accum_steps + k].tolist()
                sync = k == cfg.grad_accum_steps - 1
                with nullcontext() if sync else accelerator.no_sync(model):
                    batch = collate([transitions[i] for i in idx], pad_id, accelerator.device)
                    loss, stats = ppo_loss(model, batch, cfg)
                    accelerator.backward(loss / cfg.grad_accum_steps)
                for key, value in stats.items():
                    logs.setdefault(key, []).append(value)
            lr = cosine_lr(opt_step, total_opt, cfg.lr, cfg.warmup_steps, cfg.lr_floor)
            for group in optimizer.param_groups:  # [policy, value head]; see param_groups
                group["lr"] = 0.0 if group["name"] == "policy" and step <= cfg.value_warmup_steps else lr
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            logs.setdefault("grad_norm", []).append(float(grad_norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            opt_step += 1
    logs["lr"] = [optimizer.param_groups[0]["lr"]]  # the policy's
    return {k: sum(v) / len(v) for k, v in logs.items()}, opt_step


# ---------------------------------------------------------------- checkpoint
def save_checkpoint(accelerator, model, optimizer, tokenizer, out: Path, step: int, opt_step: int) -> None:
    """HF policy (safetensors), value head, optimiser and counters, renamed into place when whole."""
    from safetensors.torch import save_file

    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        with ckpt.writing_checkpoint(out, step) as tmp:
            unwrapped.policy.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            save_file({k: v.contiguous() for k, v in unwrapped.value_head.state_dict().items()}, str(tmp / VALUE_HEAD))
            ckpt.save_optimizer(optimizer, tmp)
            atomic_write_json(tmp / "trainer_state.json", {"step": step, "opt_step": opt_step})
    accelerator.wait_for_everyone()


def load_checkpoint(model: PolicyAndValue, optimizer, folder: Path) -> int:
    """Restore the value head and the optimiser; return the optimiser step count."""
    from safetensors.torch import load_file

    model.value_head.load_state_dict(load_file(str(folder / VALUE_HEAD)))
    ckpt.load_optimizer(optimizer, folder)
    return int(json.loads((folder / "trainer_state.json").read_text())["opt_step"])


# ---------------------------------------------------------------- logging
def log_step(accelerator, out: Path, step: int, transitions, success, stats: dict, seconds: float) -> dict:
    """Reduce PPO rollout statistics over processes and append one row to train.jsonl."""
    first = [t.reward for t in transitions if t.turn == 0]
    sums = [len(first), sum(first), sum(success), len(transitions), sum(t.reward for t in transitions)]
    n_eps, r_first, n_success, n_samples, r_all = common.sum_over_processes(accelerator, sums)
    row = {
        "stage": "rl", "algo": "ppo", "step": step, "episodes": int(n_eps), "samples": int(n_samples),
        "reward_first_turn": r_first / n_eps, "reward_mean": r_all / n_samples, "success": n_success / n_eps,
        **{k: None if v is None else round(v, 6) for k, v in stats.items()}, "seconds": round(seconds, 3),
        "samples_per_s": round(n_samples / seconds, 3),
    }
    if accelerator.is_main_process:
        append_jsonl(out / ckpt.TRAIN_LOG_FILE, row)
    return row


# ---------------------------------------------------------------- the loop
@dataclass
class Setup:
    """What :func:`setup` builds for the loop."""

    accelerator: object
    model: nn.Module
    optimizer: torch.optim.Optimizer
    tokenizer: object
    ref: nn.Module | None
    done_step: int
    opt_step: int
    probe_cfg: dict


def setup(cfg: PPOConfig, start: str | Path, out: Path, resume: bool) -> Setup | None:
    """Accelerator, run folder, policy + value head (from the last checkpoint when resuming),
    optimiser and the optional frozen reference. None when the run already finished."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    world = accelerator.num_processes
    if cfg.episodes_per_step % world or cfg.episodes_per_step // world < cfg.minibatches * cfg.grad_accum_steps:
        raise UserError(
            f"--episodes-per-step {cfg.episodes_per_step} must be a multiple of the {world} processes and give each "
            f"at least minibatches x grad_accum_steps = {cfg.minibatches * cfg.grad_accum_steps} episodes"
        )
    ckpt.check_checkpoint(start)
    probe_cfg = common.probe_settings(cfg.fmt, cfg.probe)
    if accelerator.is_main_process:
        common.prepare_run_dir(out, {**cfg.model_dump(), "start": str(start)}, resume)
    accelerator.wait_for_everyone()
    done_step = ckpt.last_checkpoint_step(out)
    if (out / ckpt.DONE_FILE).exists() and done_step >= cfg.steps:
        return None
    policy, tokenizer = common.load_policy(ckpt.checkpoint_path(out, done_step) if done_step else start, cfg.trust_remote_code)
    torch.manual_seed(cfg.seed)
    model = PolicyAndValue(policy)
    ref = None
    if cfg.kl_coef > 0:  # the frozen reference is the start checkpoint
        ref = PolicyAndValue(common.load_policy(start, cfg.trust_remote_code)[0]).eval().requires_grad_(False)
        ref.to(accelerator.device)
    optimizer = torch.optim.Adam(param_groups(model), lr=cfg.lr)
    opt_step = load_checkpoint(model, optimizer, ckpt.checkpoint_path(out, done_step)) if done_step else 0
    model, optimizer = accelerator.prepare(model, optimizer)
    return Setup(accelerator, model, optimizer, tokenizer, ref, done_step, opt_step, probe_cfg)


def train(cfg: PPOConfig, start: str | Path, out: str | Path, resume: bool = True,
          reward_fn: RewardFn | None = None, show_progress: bool = True) -> dict:
    """Run PPO from checkpoint ``start`` into run directory ``out``; return a summary."""
    from rich.progress import Progress

    out = Path(out)
    run = setup(cfg, start, out, resume)
    if run is None:
        return {"out": str(out), "step": ckpt.last_checkpoint_step(out), "skipped": True}
    acc, model, tokenizer = run.accelerator, run.model, run.tokenizer
    reward_fn = reward_fn or game_reward(cfg.fmt)
    n_local, opt_step = cfg.episodes_per_step // acc.num_processes, run.opt_step
    if run.done_step == 0 and cfg.probe_every and acc.is_main_process:
        common.probe_start(acc.unwrap_model(model).policy, tokenizer, run.probe_cfg, start, out)
    acc.wait_for_everyone()
    last = {}
    with Progress(disable=not (show_progress and acc.is_main_process)) as progress:
        task = progress.add_task("ppo", total=cfg.steps, completed=run.done_step)
        for step in range(run.done_step + 1, cfg.steps + 1):
            t0 = time.perf_counter()
            unwrapped = acc.unwrap_model(model)
            # Rollout: fresh training-partition ID hands, seeded by (seed, step, rank) so a resumed run repeats.
            seed = cfg.seed * 1_000_003 + step * 101 + acc.process_index
            hands = deal_hands("id", n_local, seed, partition="train", probe_fraction=cfg.probe_fraction)
            torch.manual_seed(seed)
            unwrapped.eval()
            transitions, success = rollout(unwrapped.policy, tokenizer, hands, cfg, reward_fn, unwrapped.value_head)
            score_buffer(unwrapped, run.ref, transitions, tokenizer.pad_token_id, cfg, acc.device)
            assign_advantages(transitions, cfg, acc)
            explained = value_explained_variance(transitions, acc)
            model.train()
            stats, opt_step = ppo_update(model, run.optimizer, acc, transitions, cfg, step, opt_step, tokenizer.pad_token_id)
            stats["explained_variance"] = explained
            last = log_step(acc, out, step, transitions, success, stats, time.perf_counter() - t0)
            progress.update(task, advance=1, description=f"ppo reward {last['reward_first_turn']:+.2f}")
            if step == cfg.steps or (cfg.probe_every and step % cfg.probe_every == 0):
                if cfg.probe_every and acc.is_main_process:
                    common.run_probes(acc.unwrap_model(model).policy, tokenizer, run.probe_cfg, "rl", step, out)
                save_checkpoint(acc, model, run.optimizer, tokenizer, out, step, opt_step)
    spread = common.replica_spread(acc, model)
    if acc.is_main_process:
        atomic_write_json(out / ckpt.DONE_FILE, {"step": cfg.steps, "last": last, "replica_max_abs_diff": spread,
                                                 "processes": acc.num_processes, "paired": common.paired_change(out)})
    acc.wait_for_everyone()
    return {"out": str(out), "step": cfg.steps, "last": last, "replica_max_abs_diff": spread}
