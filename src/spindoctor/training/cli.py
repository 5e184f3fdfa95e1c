"""``spindoctor sft``, ``spindoctor select`` and ``spindoctor rl``: thin commands over training/.

Imports nothing heavy at module level (torch, transformers and trl load inside
the commands): ``spindoctor game ...`` must not import torch, and this module
is imported when the CLI starts. Options left unset take the config models'
defaults (:class:`~spindoctor.training.sft.SFTRunConfig`,
:class:`~spindoctor.training.ppo_config.PPOConfig`, ...).
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path

import typer

from spindoctor.errors import UserError, one_line_warnings
from spindoctor.training.rl_config import Algo, Preset, resolve_rl_config


def _emit(obj: dict, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2) if as_json else text)


def _check_out(out: Path, label: str = "--out") -> None:
    """A run folder may be new or a folder; an existing file is refused before any work."""
    if (out.is_symlink() and not out.exists()) or (out.exists() and not out.is_dir()):
        raise UserError(f"{label} {out} exists and is not a folder")


def sft(
    base: Path = typer.Option(..., help="base checkpoint folder"),
    out: Path = typer.Option(..., help="run folder, e.g. runs/NAME/sft"),
    preset: str | None = typer.Option(None, help="organism (default) or chat"),
    seed: int | None = typer.Option(None, help="data and trainer seed"),
    steps: int | None = typer.Option(None, help="optimizer steps"),
    lr: float | None = typer.Option(None, help="peak learning rate"),
    batch_size: int | None = typer.Option(None, help="examples per step"),
    grad_accum_steps: int | None = typer.Option(None, help="micro-batches per step (batch-size must divide by it)"),
    fmt: str | None = typer.Option(None, "--format", help="compact or paper"),
    probe_n: int | None = typer.Option(None, help="probe hands per split (0: all)"),
    probe_every: int | None = typer.Option(None, help="steps between probes after the dense phase"),
    report_to: str | None = typer.Option(None, help="comma list: tensorboard,wandb,mlflow or none"),
    threads: int | None = typer.Option(None, help="torch CPU threads"),
    resume: bool = typer.Option(True, "--resume/--no-resume",
                                help="continue an unfinished run of the same config found in --out"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """SFT on the ID rule with ID/OOD probes and a checkpoint at every probe step; an interrupted
    run resumes from its last probe step when run again with the same settings."""
    from spindoctor.probes.core import ProbeConfig
    from spindoctor.training.sft import resolve_config, run_sft

    if fmt is not None and fmt not in ("compact", "paper"):
        raise UserError(f"--format must be compact or paper, got {fmt!r}")
    probe_cfg = None if probe_n is None else ProbeConfig(n=probe_n if probe_n > 0 else None)
    targets = None if report_to is None else [s.strip() for s in report_to.split(",") if s.strip()]
    cfg = resolve_config(preset, base=str(base), out=str(out), seed=seed, steps=steps, lr=lr, batch_size=batch_size,
                         grad_accum_steps=grad_accum_steps, fmt=fmt, probe=probe_cfg, probe_every=probe_every,
                         threads=threads, report_to=targets)
    _check_out(out)
    from spindoctor.models.load import check_model_folder

    check_model_folder(base, tokenizer=True, trust_remote_code=cfg.trust_remote_code)
    with warnings.catch_warnings():  # restores showwarning
        from spindoctor.training.sft_resume import ResumeWarning

        warnings.showwarning = one_line_warnings(warnings.showwarning, ResumeWarning)
        summary = run_sft(cfg, say=(lambda s: None) if as_json else typer.echo, resume=resume)
    resumed = f", resumed from step {summary['resumed_from']}" if "resumed_from" in summary else ""
    _emit(summary, as_json, f"done: {out} ({summary['steps']} steps, {summary['seconds']:.0f} s{resumed})")


def select(
    run_dir: Path = typer.Argument(..., help="SFT run folder with metrics.jsonl"),
    window: int | None = typer.Option(None, help="probe points pooled per smoothed value (odd)"),
    z: float | None = typer.Option(None, help="standard errors for rise/decline"),
    as_json: bool = typer.Option(False, "--json", help="print selection.json"),
) -> None:
    """Pick the OOD-peak, middle and end checkpoints; write selection.json."""
    from spindoctor.models.checkpoints import SELECTION_FILE
    from spindoctor.training.select import select_run

    if window is not None and (window < 1 or window % 2 == 0):
        raise UserError(f"--window must be odd and >= 1, got {window}")
    sel = select_run(run_dir, **{k: v for k, v in {"window": window, "z": z}.items() if v is not None})
    text = [f"shape: {sel['shape']} (rise {sel['rise_z']:.1f} SE, decline {sel['decline_z']:.1f} SE)",
            f"signal: {sel['signal']} ({sel['why']})"]
    for name in ("peak", "middle", "end"):
        e = sel[name]
        text.append(f"{name:<6} step {e['step']:>4}  OOD {e['ood_acc']:.3f} ± {e['ood_acc_se']:.3f}"
                    f" (pooled {e['ood_smoothed']:.3f}, 95% CI {e['ood_smoothed_ci95'][0]:.3f}-"
                    f"{e['ood_smoothed_ci95'][1]:.3f})  ID {e.get('id_acc', float('nan')):.3f}")
    text.append(f"wrote {run_dir / SELECTION_FILE}")
    _emit({k: v for k, v in sel.items() if k != "curve"}, as_json, "\n".join(text))


def rl(
    start: Path = typer.Option(None, "--from", help="SFT checkpoint folder (HF, safetensors)"),
    selection: Path = typer.Option(None, "--from-selection", help="RUN/sft/selection.json: one run per selected checkpoint"),
    algo: Algo = typer.Option(Algo.ppo, "--algo", help="ppo (own loop, value head) or grpo (TRL)"),
    out: Path = typer.Option(None, "--out", help="run folder (with --from-selection: parent of one folder per start; default RUN/rl)"),
    preset: Preset = typer.Option(None, "--preset", help="reference (paper settings) or organism (CPU); default: the one "
                                  "fitting the start's SFT format (compact: organism), reference without SFT metadata"),
    config_file: Path = typer.Option(None, "--config", help="YAML file of config fields"),
    steps: int = typer.Option(None, "--steps", help="training steps"),
    probe_every: int = typer.Option(None, "--probe-every", help="probe + checkpoint every N steps"),
    probe_n: int = typer.Option(None, "--probe-n", help="hands per probe split"),
    lr: float = typer.Option(None, "--lr", help="learning rate"),
    seed: int = typer.Option(None, "--seed", help="random seed"),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads (default: the CPUs not busy, at most 2)"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="continue a run found in --out"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary only"),
) -> None:
    """Run RL from SFT checkpoints; probes ID/OOD into metrics.jsonl, checkpoints at probe steps."""
    overrides = {"steps": steps, "probe_every": probe_every, "lr": lr, "seed": seed}
    plans = _rl_plans(start, selection, out, algo, preset, config_file, overrides, probe_n)
    from transformers.utils import logging as hf_logging

    from spindoctor.devices import set_torch_threads

    set_torch_threads(threads)  # None: the CPUs not busy now, at most 2

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    if algo is Algo.ppo:
        from spindoctor.training.ppo import train
    else:
        from spindoctor.training.grpo import train
    summaries = []
    for label, ckpt, run_out, cfg, note in plans:
        if not as_json:
            typer.echo(f"rl {algo.value} {label}: {note}")
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            summary = train(cfg, ckpt, run_out, resume=resume, show_progress=not as_json)
        summaries.append({"start": label, "from": str(ckpt), "preset_choice": note, **summary})
        if not as_json:
            last = summary.get("last") or {}
            reward = last.get("reward_mean")
            done = "already finished" if summary.get("skipped") else f"last reward {reward:+.3f}" if reward is not None else ""
            typer.echo(f"rl {algo.value} {label}: {summary['step']} steps -> {run_out} ({done})")
    if as_json:
        typer.echo(json.dumps({"algo": algo.value, "runs": summaries}))
    _end_process_group()


def _end_process_group() -> None:
    """Leave a multi-process launch cleanly: a gloo/NCCL group left to interpreter exit can
    abort a rank ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _rl_plans(start, selection, out, algo, preset, config_file, overrides, probe_n) -> list[tuple]:
    """``(label, checkpoint, run folder, config, preset note)`` per RL run, every input checked
    (checkpoint folders, run folders, preset against the start's SFT format) before any work."""
    from spindoctor.models.load import check_model_folder

    if (start is None) == (selection is None):
        raise UserError("give exactly one of --from CKPT or --from-selection SELECTION.json")
    if selection is not None:
        parent = out or selection.parent.parent / "rl"
        _check_out(parent)
        from spindoctor.training.select import read_selection

        jobs = [(label, Path(ckpt), parent / label) for label, ckpt in read_selection(selection)]
    else:
        if out is None:
            raise UserError("--out is required with --from")
        jobs = [(start.name, start, out)]
    plans = []
    for label, ckpt, run_out in jobs:
        _check_out(run_out)
        cfg, _, note = resolve_rl_config(algo, preset, config_file, overrides, ckpt)
        if probe_n is not None:
            cfg = cfg.model_copy(update={"probe": {**cfg.probe, "n": probe_n}})
        check_model_folder(ckpt, tokenizer=True, trust_remote_code=cfg.trust_remote_code)
        plans.append((label, ckpt, run_out, cfg, note))
    return plans
