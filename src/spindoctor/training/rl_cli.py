"""``spindoctor rl``: PPO (own loop) or GRPO (TRL) from one SFT checkpoint or a selection.

Imports nothing heavy at module level: ``spindoctor game ...`` must not import
torch, and this module is imported when the CLI starts.
"""

from __future__ import annotations

import contextlib
import json
import sys
from enum import StrEnum
from pathlib import Path

import typer
import yaml

from spindoctor.errors import UserError, first_error


class Algo(StrEnum):
    ppo = "ppo"
    grpo = "grpo"


class Preset(StrEnum):
    reference = "reference"
    organism = "organism"


def read_selection(path: Path) -> list[tuple[str, Path]]:
    """(label, checkpoint folder) pairs from an SFT ``selection.json``, in file order.

    Reads the shape ``spindoctor.training.select`` writes (``{"peak": {"step",
    "path", ...}, "end": {...}, "middle": {...}, "rule": ..., ...}``) and a plain
    ``{"checkpoints": [{"label", "path" or "step"}, ...]}`` list; see
    :func:`_checkpoint_folder` for how a path or step is found. Labels naming the
    same checkpoint run once (first label).
    """
    if not path.is_file():
        raise UserError(f"selection file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a selection (expected a JSON object)")
    if isinstance(data.get("checkpoints"), list):
        items = [(str(e.get("label")), e) for e in data["checkpoints"] if isinstance(e, dict)]
    else:
        items = [(k, v) for k, v in data.items() if isinstance(v, dict) and ("step" in v or "path" in v)]
    out: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for label, entry in items:
        folder = _checkpoint_folder(path, entry.get("path"), entry.get("step"))
        if folder is None:
            continue
        if folder.resolve() not in seen:
            seen.add(folder.resolve())
            out.append((label, folder))
    if not out:
        raise UserError(f"{path} names no checkpoints (expected peak/end/middle entries with a step or path)")
    return out


def _checkpoint_folder(selection: Path, where: str | None, step: int | None) -> Path | None:
    """The first existing of: ``where`` as written (absolute or relative to the working
    folder, as the SFT selector writes it), ``where`` beside the selection file,
    ``checkpoint-<step>`` beside it; else the first of them."""
    candidates = [Path(where), selection.parent / where] if where else []
    if step is not None:
        candidates.append(selection.parent / f"checkpoint-{int(step)}")
    return next((c for c in candidates if c.is_dir()), candidates[0] if candidates else None)


def inherit_sft_probes(cfg, ckpt: Path, explicit: set[str]):
    """Use the probe set-up of the SFT run that holds ``ckpt`` (``<run>/config.yaml``).

    RL must train on the same train partition (``probe_fraction``) and be probed
    with the same probe sets as SFT, or the curves are not comparable and probe
    hands leak into RL. Fields set in ``--config`` or by flags win.
    """
    sft_cfg = ckpt.parent / "config.yaml"
    if not sft_cfg.is_file():
        return cfg
    data = yaml.safe_load(sft_cfg.read_text()) or {}
    update = {}
    if "probe_fraction" in data and "probe_fraction" not in explicit:
        update["probe_fraction"] = float(data["probe_fraction"])
    if isinstance(data.get("probe"), dict) and "probe" not in explicit:
        update["probe"] = {**data["probe"], **cfg.probe}
    return cfg.model_copy(update=update) if update else cfg


def build_config(algo: Algo, preset: Preset, config_file: Path | None, overrides: dict):
    """Preset, then the YAML file, then the command-line flags; validated by the pydantic model."""
    from pydantic import ValidationError

    if algo is Algo.ppo:
        from spindoctor.training.ppo_config import PRESETS
        from spindoctor.training.ppo_config import PPOConfig as Model
    else:
        from spindoctor.training.grpo import PRESETS
        from spindoctor.training.grpo import GRPORunConfig as Model
    fields = dict(PRESETS[preset.value])
    if config_file is not None:
        if not config_file.is_file():
            raise UserError(f"config file not found: {config_file}")
        fields.update(yaml.safe_load(config_file.read_text()) or {})
    fields.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Model(**fields), set(fields) - set(PRESETS[preset.value])
    except ValidationError as err:
        where, msg = first_error(err)
        raise UserError(f"bad {algo.value} setting {where or 'config'}: {msg}") from None


def rl(
    start: Path = typer.Option(None, "--from", help="SFT checkpoint folder (HF, safetensors)"),
    selection: Path = typer.Option(None, "--from-selection", help="RUN/sft/selection.json: one run per selected checkpoint"),
    algo: Algo = typer.Option(Algo.ppo, "--algo", help="ppo (own loop, value head) or grpo (TRL)"),
    out: Path = typer.Option(None, "--out", help="run folder (with --from-selection: parent of one folder per start; default RUN/rl)"),
    preset: Preset = typer.Option(Preset.reference, "--preset", help="reference (paper settings) or organism (CPU)"),
    config_file: Path = typer.Option(None, "--config", help="YAML file of config fields"),
    steps: int = typer.Option(None, "--steps", help="training steps"),
    probe_every: int = typer.Option(None, "--probe-every", help="probe + checkpoint every N steps"),
    probe_n: int = typer.Option(None, "--probe-n", help="hands per probe split"),
    lr: float = typer.Option(None, "--lr", help="learning rate"),
    seed: int = typer.Option(None, "--seed", help="random seed"),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads (1 is fastest on a busy machine)"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="continue a run found in --out"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary only"),
) -> None:
    """Run RL from SFT checkpoints; probes ID/OOD into metrics.jsonl, checkpoints at probe steps."""
    if (start is None) == (selection is None):
        raise UserError("give exactly one of --from CKPT or --from-selection SELECTION.json")
    overrides = {"steps": steps, "probe_every": probe_every, "lr": lr, "seed": seed}
    cfg, explicit = build_config(algo, preset, config_file, overrides)
    if probe_n is not None:
        cfg = cfg.model_copy(update={"probe": {**cfg.probe, "n": probe_n}})
    base_cfg = cfg
    if selection is not None:
        parent = out or selection.parent.parent / "rl"
        jobs = [(label, ckpt, parent / label) for label, ckpt in read_selection(selection)]
    else:
        if out is None:
            raise UserError("--out is required with --from")
        jobs = [(start.name, start, out)]
    import torch
    from transformers.utils import logging as hf_logging

    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    if algo is Algo.ppo:
        from spindoctor.training.ppo import train
    else:
        from spindoctor.training.grpo import train
    summaries = []
    for label, ckpt, run_out in jobs:
        cfg = inherit_sft_probes(base_cfg, Path(ckpt), explicit)
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            summary = train(cfg, ckpt, run_out, resume=resume, show_progress=not as_json)
        summaries.append({"start": label, "from": str(ckpt), **summary})
        if not as_json:
            last = summary.get("last") or {}
            reward = last.get("reward_mean")
            note = "already finished" if summary.get("skipped") else f"last reward {reward:+.3f}" if reward is not None else ""
            typer.echo(f"rl {algo.value} {label}: {summary['step']} steps -> {run_out} ({note})")
    if as_json:
        typer.echo(json.dumps({"algo": algo.value, "runs": summaries}))
