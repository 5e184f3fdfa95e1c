"""What PPO and GRPO share: safe loading, prompt rendering, the run folder, probes.

Run folder (docs/design.md, "Run folder"; names in
:mod:`spindoctor.models.checkpoints`): ``config.yaml`` (resolved, written
first), ``metrics.jsonl`` (one row per probe and split, from
``spindoctor.probes.metrics_row``), ``train.jsonl`` (one row of rollout and
loss statistics per step), one checkpoint folder per probe step (HF
safetensors, written atomically) and ``done.json`` when the run finished.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from spindoctor.errors import UserError, first_error
from spindoctor.game.formats import FormatName
from spindoctor.io import (
    append_jsonl,
    atomic_write_jsonl,
    atomic_write_text,
    read_jsonl,
)
from spindoctor.models.checkpoints import (
    CONFIG_FILE,
    METRICS_FILE,
    PROBE_FILE,
    TRAIN_LOG_FILE,
    last_checkpoint_step,
    remove_partial_checkpoints,
)
from spindoctor.training.rl_math import prefix_token_weights

_PAPER_FORMULA_KEY = re.compile(r"""["']formula["']""")


def load_policy(path: str | Path, trust_remote_code: bool = False):
    """An HF causal LM and its tokenizer from a local folder (safetensors only), left padding."""
    from spindoctor.models.load import load_causal_lm

    model, tokenizer = load_causal_lm(path, trust_remote_code)
    tokenizer.padding_side = "left"
    return model, tokenizer


def render_state(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The text a policy continues after ``messages``; the probes' rendering, so that RL
    trains on exactly the text the probes measure (chat template, or plain turns)."""
    from spindoctor.models.generate import render_chat

    return render_chat(tokenizer, messages)


def formula_start(fmt: FormatName, response: str) -> int | None:
    """Character offset where the formula part of a response begins, or None.

    compact: just after the ``|``; paper: at the ``"formula"`` key. The
    reference weights the log-probability of the tokens before it by 0.5.
    """
    if fmt == "compact":
        first_line = response.split("\n", 1)[0]
        bar = first_line.find("|")
        return bar + 1 if bar >= 0 else None
    match = _PAPER_FORMULA_KEY.search(response)
    return match.start() if match else None


# ---------------------------------------------------------------- batches
def token_weights(tokenizer: Any, response_ids: list[int], formula_at: int | None, weight: float) -> list[float]:
    """Per-token weights of a response: ``weight`` before the formula, 1 from it on.

    Token end offsets come from decoding each token alone (exact for the
    character organism, approximate for byte-level BPE around multi-byte characters).
    """
    ends, total = [], 0
    for piece in tokenizer.batch_decode([[t] for t in response_ids], skip_special_tokens=True):
        total += len(piece)
        ends.append(total)
    return prefix_token_weights(ends, formula_at, weight)


def collate(batch: list, pad_id: int, device) -> dict:
    """Tensors of a batch of PPO transitions: prompts left-padded and responses right-padded,
    so every prompt ends in the same column (where the value head reads)."""
    import torch

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


def replica_spread(accelerator, model) -> float:
    """Largest difference over processes of each parameter's (sum, sum of squares), float64.

    0.0 when every DDP replica holds the same weights (always 0 single-process).
    """
    import torch

    with torch.no_grad():
        sig = torch.stack([torch.stack([p.double().sum(), p.double().pow(2).sum()]) for p in model.parameters()])
    every = accelerator.gather(sig.flatten().unsqueeze(0).to(accelerator.device))
    return float((every - every[0]).abs().max())


# ---------------------------------------------------------------- run directory
def prepare_run_dir(out: Path, config: dict, resume: bool) -> int:
    """Create ``out`` or resume it; return the step of the last complete checkpoint (0 if none).

    A resumed run must have been started with the same config (``steps`` may
    grow); rows logged after the last checkpoint are dropped so that the
    resumed run rewrites them.
    """
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / CONFIG_FILE
    if cfg_path.exists():
        if not resume:
            raise UserError(f"{out} already holds a run; pass --resume or choose another --out")
        saved = yaml.safe_load(cfg_path.read_text()) or {}
        diff = sorted(k for k in set(saved) | set(config) if k != "steps" and saved.get(k) != config.get(k))
        if diff:
            raise UserError(f"{out} was started with a different config (fields {', '.join(diff)})")
    atomic_write_text(cfg_path, yaml.safe_dump(config, sort_keys=False))
    step = last_checkpoint_step(out)
    for name in (METRICS_FILE, TRAIN_LOG_FILE):
        path = out / name
        if path.exists():
            atomic_write_jsonl(path, [r for r in read_jsonl(path) if int(r.get("step", 0)) <= step])
    remove_partial_checkpoints(out)
    return step


# ---------------------------------------------------------------- probes
def probe_settings(fmt: str, probe: dict) -> dict:
    """The run's ``ProbeConfig`` fields (its format unless overridden), checked at startup."""
    from pydantic import ValidationError

    from spindoctor.probes import ProbeConfig

    fields = {"fmt": fmt, **probe}
    try:
        ProbeConfig(**fields)
    except ValidationError as err:
        where, msg = first_error(err)
        raise UserError(f"bad probe setting {where}: {msg}") from None
    return fields


def run_probes(model: Any, tokenizer: Any, probe_cfg: dict, stage: str, step: int, out: Path) -> list[dict]:
    """Probe ID and OOD with ``spindoctor.probes`` and append the rows to metrics.jsonl.

    ``probe_cfg`` holds ``ProbeConfig`` fields (the run's format among them).
    """
    from spindoctor.probes import ProbeConfig, metrics_row, probe_model

    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    try:
        results = probe_model(model, tokenizer, ProbeConfig(**probe_cfg))
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    rows = []
    for split in ("id", "ood"):
        if split in results:
            row = metrics_row(stage, step, results[split])
            append_jsonl(out / METRICS_FILE, row)
            rows.append(row)
    return rows


def reusable_probe_rows(start: str | Path, probe_cfg: dict, model_dtype: str) -> list[dict] | None:
    """The probe rows an SFT checkpoint was saved with, when they answer ``probe_cfg`` exactly.

    RL's step 0 is the start checkpoint itself, which SFT already probed: probes
    of the same weights in the same dtype with the same resolved ``ProbeConfig``
    (hands, format, decoding, n) give the same numbers, so they are copied
    instead of recomputed. None when ``start/probe.json`` is absent, older (no
    ``probe_config``), or made with another probe setting or parameter dtype.
    """
    from spindoctor.probes import ProbeConfig

    path = Path(start) / PROBE_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    wanted = ProbeConfig(**probe_cfg)
    if not isinstance(saved, dict) or saved.get("probe_config") != wanted.model_dump(mode="json"):
        return None
    if saved.get("model_dtype") != model_dtype:
        return None
    rows = saved.get("rows") or []
    return rows if sorted(r.get("split") for r in rows) == sorted(wanted.splits) else None


def probe_start(model: Any, tokenizer: Any, probe_cfg: dict, start: str | Path, out: Path) -> list[dict]:
    """Step-0 probe rows of an RL run: the start checkpoint's own rows when reusable, else a probe."""
    saved = reusable_probe_rows(start, probe_cfg, str(next(model.parameters()).dtype))
    if saved is None:
        return run_probes(model, tokenizer, probe_cfg, "rl", 0, out)
    rows = [{**row, "stage": "rl", "step": 0, "reused_from": str(Path(start) / PROBE_FILE)} for row in saved]
    for row in rows:
        append_jsonl(out / METRICS_FILE, row)
    return rows


# ---------------------------------------------------------------- logging
def log_step(accelerator, out: Path, step: int, transitions, success, stats: dict, seconds: float) -> dict:
    """Reduce PPO rollout statistics over processes and append one row to train.jsonl."""
    import torch

    first = [t.reward for t in transitions if t.turn == 0]
    sums = torch.tensor(
        [len(first), sum(first), sum(success), len(transitions), sum(t.reward for t in transitions)],
        dtype=torch.float64, device=accelerator.device,
    )
    n_eps, r_first, n_success, n_samples, r_all = accelerator.reduce(sums, "sum").tolist()
    row = {
        "stage": "rl", "algo": "ppo", "step": step, "episodes": int(n_eps), "samples": int(n_samples),
        "reward_first_turn": r_first / n_eps, "reward_mean": r_all / n_samples, "success": n_success / n_eps,
        **{k: round(v, 6) for k, v in stats.items()}, "seconds": round(seconds, 3),
        "samples_per_s": round(n_samples / seconds, 3),
    }
    if accelerator.is_main_process:
        append_jsonl(out / TRAIN_LOG_FILE, row)
    return row
