"""What PPO and GRPO share: loading, the game's reward, prompt rendering, the run folder,
probes, and a check that data-parallel replicas agree.

Run folder (docs/design.md, "Run folder"; names in
:mod:`spindoctor.models.checkpoints`): ``config.yaml`` (resolved, written
first), ``metrics.jsonl`` (one row per probe and split, from
``spindoctor.probes.metrics_row``), ``train.jsonl`` (one row of rollout and
loss statistics per step), one checkpoint folder per probe step (HF
safetensors, written atomically) and ``done.json`` when the run finished.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from spindoctor.errors import UserError, first_error
from spindoctor.game.deal import Hand
from spindoctor.game.episodes import feedback_text, judge_response
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


def load_policy(path: str | Path, trust_remote_code: bool = False):
    """An HF causal LM and its tokenizer from a local folder (safetensors only), left padding."""
    from spindoctor.models.load import load_causal_lm

    model, tokenizer = load_causal_lm(path, trust_remote_code)
    tokenizer.padding_side = "left"
    return model, tokenizer


RewardFn = Callable[[Hand, str], tuple[float, bool, str]]


def game_reward(fmt: str) -> RewardFn:
    """The game's reward table: (reward, correct, revision feedback) of a response."""

    def reward(hand: Hand, text: str) -> tuple[float, bool, str]:
        _, verdict = judge_response(fmt, text, hand)  # type: ignore[arg-type]
        return verdict.reward, verdict.correct, feedback_text(verdict)

    return reward


def render_state(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The text a policy continues after ``messages``; the probes' rendering, so that RL
    trains on exactly the text the probes measure (chat template, or plain turns)."""
    from spindoctor.models.generate import render_chat

    return render_chat(tokenizer, messages)


# ---------------------------------------------------------------- processes
def sum_over_processes(accelerator, values: list) -> list[float]:
    """Each of ``values`` (numbers or 0-d tensors) summed over every process, in float64."""
    import torch

    local = torch.tensor([float(v) for v in values], dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(local, "sum").tolist()


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
            raise UserError(f"out {out} already holds a run; resume it or choose another folder")
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


def paired_change(out: Path) -> dict:
    """Hand-by-hand change of an RL run from its step-0 probe to its last probe, per split.

    Returns
    -------
    dict
        ``{split: {"before_step", "after_step", **compare_probes(...)}}`` for each
        split with per-hand rows of the same hands at both steps (empty when the
        run probed only once or its rows predate per-hand records). The RL stage
        "works" when the ID accuracy and reward intervals lie above 0
        (docs/design.md, "Evidence").
    """
    from spindoctor.probes.compare import compare_probes

    path = out / METRICS_FILE
    rows = [r for r in read_jsonl(path) if r.get("per_hand")] if path.exists() else []
    result: dict = {}
    for split in ("id", "ood"):
        mine = {int(r["step"]): r for r in rows if r.get("split") == split}
        if len(mine) < 2 or 0 not in mine:
            continue
        last = max(mine)
        try:
            result[split] = {"before_step": 0, "after_step": last, **compare_probes(mine[0], mine[last])}
        except ValueError:  # different hands: probe settings changed between the two rows
            continue
    return result
