"""PPO with a value head, the paper's RL stage, in one file (CleanRL ppo.py style).

Reads top to bottom: setup, rollout (episodes + reward), advantage, loss,
update step, probe, checkpoint, the training loop; the config and presets are in
:mod:`spindoctor.training.ppo_config` (no torch needed to validate one). The maths lives in
:mod:`spindoctor.training.rl_math`; the run directory and the probes in
:mod:`spindoctor.training.rl_common`.

Reference (spec/findings.md, "Reference training settings"): one response is
one action whose log-probability sums its tokens (those before the formula
weighted 0.5); a value head h -> h/4 -> h/8 -> 1 on the final hidden state of
the last prompt token; GAE over the turns of a 5-turn revision episode
(gamma 0.9, lambda 0.95); advantages normalised over the buffer; clip 0.1 for
policy and value; value coefficient 0.5; 4 epochs; max grad norm 0.01; Adam
lr 1e-6 cosine to ~0; no KL penalty; rollouts at temperature 0.2.

Runs single-process or under ``accelerate launch --num_processes N`` (DDP):
each process plays ``episodes_per_step / N`` episodes, gradients are averaged,
advantages are whitened with statistics over all processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from spindoctor.errors import UserError
from spindoctor.game.deal import Hand, deal_hands
from spindoctor.game.episodes import feedback_text, judge_response
from spindoctor.game.formats import render_prompt
from spindoctor.io import atomic_write_json
from spindoctor.models.checkpoints import (
    DONE_FILE,
    check_checkpoint,
    checkpoint_path,
    last_checkpoint_step,
    load_optimizer,
    save_optimizer,
    writing_checkpoint,
)
from spindoctor.training import rl_common as common
from spindoctor.training.ppo_config import PPOConfig
from spindoctor.training.rl_math import (
    action_logprob,
    clipped_policy_loss,
    clipped_value_loss,
    cosine_lr,
    gae,
    kl_to_reference,
    mean_var_from_moments,
    whiten,
)

# ---------------------------------------------------------------- config: spindoctor.training.ppo_config


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


RewardFn = Callable[[Hand, str], tuple[float, bool, str]]


def game_reward(fmt: str) -> RewardFn:
    """The game's reward table: (reward, correct, revision feedback) of a response."""

    def reward(hand: Hand, text: str) -> tuple[float, bool, str]:
        _, verdict = judge_response(fmt, text, hand)  # type: ignore[arg-type]
        return verdict.reward, verdict.correct, feedback_text(verdict)

    return reward


# ---------------------------------------------------------------- rollout
@torch.no_grad()
def generate(policy, tokenizer, texts: list[str], cfg: PPOConfig, value_head: nn.Module | None = None):
    """Sample one response per prompt.

    Returns prompt ids, response ids (up to the first EOS) and, with a
    ``value_head``, the value of each prompt: the head reads the final hidden
    state of the last prompt token as the LM head receives it in the prefill
    (left padding puts every prompt's last token in the last column), so the
    critic costs no extra forward pass.
    """
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not tokenizer.chat_template)
    seen: list[torch.Tensor] = []
    hook = None
    if value_head is not None:
        hook = policy.get_output_embeddings().register_forward_pre_hook(
            lambda _mod, args: None if seen else seen.append(args[0][:, -1].detach())
        )
    try:
        out = policy.generate(
            **enc.to(policy.device), do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
            max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens or None,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        )
    finally:
        if hook is not None:
            hook.remove()
    values = value_head(seen[0].float()).squeeze(-1).tolist() if seen else [0.0] * len(texts)
    prompts, responses = [], []
    for row, mask, gen in zip(enc["input_ids"], enc["attention_mask"], out[:, enc["input_ids"].shape[1] :], strict=True):
        prompts.append(row[mask.bool()].tolist())
        ids = gen.tolist()
        if tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id) + 1]
        responses.append(ids)
    return prompts, responses, values


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
        prompts, responses, values = generate(policy, tokenizer, texts, cfg, value_head)
        still = []
        for i, p_ids, r_ids, value in zip(active, prompts, responses, values, strict=True):
            text = tokenizer.decode(r_ids, skip_special_tokens=True)
            reward, correct, feedback = reward_fn(hands[i], text)
            weights = common.token_weights(tokenizer, r_ids, common.formula_start(cfg.fmt, text), cfg.prefix_weight)
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
        batch = common.collate(part, pad_id, device)
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
        moments = torch.tensor([flat.numel(), flat.sum(), (flat**2).sum()], dtype=torch.float64)
        n, total, total_sq = accelerator.reduce(moments.to(accelerator.device), "sum").tolist()
        mean, var = mean_var_from_moments(n, total, total_sq)
        adv = whiten(adv, mask, mean, var)
    for t in transitions:
        t.advantage, t.ret = float(adv[t.episode, t.turn]), float(ret[t.episode, t.turn])


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
                    loss, stats = ppo_loss(model, common.collate([transitions[i] for i in idx], pad_id, accelerator.device), cfg)
                    accelerator.backward(loss / cfg.grad_accum_steps)
                for key, value in stats.items():
                    logs.setdefault(key, []).append(value)
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(opt_step, total_opt, cfg.lr, cfg.warmup_steps, cfg.lr_floor)
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            logs.setdefault("grad_norm", []).append(float(grad_norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            opt_step += 1
    logs["lr"] = [optimizer.param_groups[0]["lr"]]
    return {k: sum(v) / len(v) for k, v in logs.items()}, opt_step


# ---------------------------------------------------------------- checkpoint
def save_checkpoint(accelerator, model, optimizer, tokenizer, out: Path, step: int, opt_step: int) -> None:
    """HF policy (safetensors), value head, optimiser and counters, renamed into place when whole."""
    from safetensors.torch import save_file

    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        with writing_checkpoint(out, step) as tmp:
            unwrapped.policy.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            value_head = {k: v.contiguous() for k, v in unwrapped.value_head.state_dict().items()}
            save_file(value_head, str(tmp / "value_head.safetensors"))
            save_optimizer(optimizer, tmp)
            atomic_write_json(tmp / "trainer_state.json", {"step": step, "opt_step": opt_step})
    accelerator.wait_for_everyone()


def load_checkpoint(model: PolicyAndValue, optimizer, folder: Path) -> int:
    """Restore the value head and the optimiser; return the optimiser step count."""
    import json

    from safetensors.torch import load_file

    model.value_head.load_state_dict(load_file(str(folder / "value_head.safetensors")))
    load_optimizer(optimizer, folder)
    return int(json.loads((folder / "trainer_state.json").read_text())["opt_step"])


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
    check_checkpoint(start)
    probe_cfg = common.probe_settings(cfg.fmt, cfg.probe)
    if accelerator.is_main_process:
        common.prepare_run_dir(out, {**cfg.model_dump(), "start": str(start)}, resume)
    accelerator.wait_for_everyone()
    done_step = last_checkpoint_step(out)
    if (out / DONE_FILE).exists() and done_step >= cfg.steps:
        return None
    policy, tokenizer = common.load_policy(checkpoint_path(out, done_step) if done_step else start, cfg.trust_remote_code)
    torch.manual_seed(cfg.seed)
    model = PolicyAndValue(policy)
    ref = None
    if cfg.kl_coef > 0:  # the frozen reference is the start checkpoint
        ref = PolicyAndValue(common.load_policy(start, cfg.trust_remote_code)[0]).eval().requires_grad_(False)
        ref.to(accelerator.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    opt_step = load_checkpoint(model, optimizer, checkpoint_path(out, done_step)) if done_step else 0
    model, optimizer = accelerator.prepare(model, optimizer)
    return Setup(accelerator, model, optimizer, tokenizer, ref, done_step, opt_step, probe_cfg)


def train(cfg: PPOConfig, start: str | Path, out: str | Path, resume: bool = True,
          reward_fn: RewardFn | None = None, show_progress: bool = True) -> dict:
    """Run PPO from checkpoint ``start`` into run directory ``out``; return a summary."""
    from rich.progress import Progress

    out = Path(out)
    run = setup(cfg, start, out, resume)
    if run is None:
        return {"out": str(out), "step": last_checkpoint_step(out), "skipped": True}
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
            model.train()
            stats, opt_step = ppo_update(model, run.optimizer, acc, transitions, cfg, step, opt_step, tokenizer.pad_token_id)
            last = common.log_step(acc, out, step, transitions, success, stats, time.perf_counter() - t0)
            progress.update(task, advance=1, description=f"ppo reward {last['reward_first_turn']:+.2f}")
            if step == cfg.steps or (cfg.probe_every and step % cfg.probe_every == 0):
                if cfg.probe_every and acc.is_main_process:
                    common.run_probes(acc.unwrap_model(model).policy, tokenizer, run.probe_cfg, "rl", step, out)
                save_checkpoint(acc, model, run.optimizer, tokenizer, out, step, opt_step)
    spread = common.replica_spread(acc, model)
    if acc.is_main_process:
        atomic_write_json(out / DONE_FILE, {"step": cfg.steps, "last": last, "replica_max_abs_diff": spread})
    acc.wait_for_everyone()
    return {"out": str(out), "step": cfg.steps, "last": last, "replica_max_abs_diff": spread}
