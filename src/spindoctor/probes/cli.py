"""CLI of issue 3: ``organism pretrain``, ``probe``, ``sft``, ``select``.

Thin commands over the library; torch, transformers and trl are imported
inside the command functions only (``spindoctor game ...`` never loads them).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import typer

from spindoctor.errors import UserError

organism_app = typer.Typer(help="The model organism: a tiny Llama trained from scratch.", no_args_is_help=True)


def _emit(obj: dict, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2) if as_json else text)


@organism_app.command("pretrain")
def organism_pretrain(
    out: Path = typer.Option(..., "--out", help="folder for the HF checkpoint"),
    seed: int = typer.Option(0, help="seed of weights and corpus"),
    steps: int | None = typer.Option(None, help="optimizer steps (default: PretrainConfig)"),
    threads: int | None = typer.Option(None, help="torch threads (default 2)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Pretrain the organism on the both-rules corpus and save it (safetensors + tokenizer)."""
    from spindoctor.models.organism_pretrain import PretrainConfig, pretrain

    if out.exists() and any(out.glob("*.safetensors")):
        raise UserError(f"{out} already holds a checkpoint; choose another --out")
    values = {"seed": seed, "steps": steps, "threads": threads}
    cfg = PretrainConfig(**{k: v for k, v in values.items() if v is not None})
    summary = pretrain(cfg, out, progress=not as_json)
    summary = {k: v for k, v in summary.items() if k != "log"} | {"out": str(out)}
    _emit(summary, as_json, f"saved {out} ({summary['parameters']} parameters, {summary['steps']} steps, "
          f"{summary['seconds']:.0f} s, final loss {summary['final_loss_ema']:.3f}, "
          f"greedy accuracy on fresh corpus problems {summary['corpus_acc']:.3f})")


def _probe_config(splits: str, n: int, fmt: str, seed: int, batch_size: int, max_turns: int, mode: str):
    from spindoctor.probes.core import ProbeConfig

    names = [s.strip() for s in splits.split(",") if s.strip()]
    bad = [s for s in names if s not in ("id", "ood")]
    if bad or not names:
        raise UserError(f"--splits takes id,ood; got {splits!r}")
    if fmt not in ("compact", "paper"):
        raise UserError(f"--format must be compact or paper, got {fmt!r}")
    if mode not in ("greedy", "sample"):
        raise UserError(f"--mode must be greedy or sample, got {mode!r}")
    return ProbeConfig(splits=names, n=n if n > 0 else None, fmt=fmt, seed=seed,
                       batch_size=batch_size, max_turns=max_turns, mode=mode)


@contextmanager
def _probe_bar(label: str, disable: bool):
    """A transient rich bar; yields ``tick(phase, done, total)`` for :func:`probe_model`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(f"[bold]probe {label}"), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), transient=True, disable=disable) as bar:
        task = bar.add_task("", total=None)

        def tick(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        yield tick


def _probe_text(ckpt: str, results: dict) -> str:
    lines = [f"{ckpt}"]
    for r in results.values():
        lines.append(f"  {r.split:<3} n {r.n:>4}  acc {r.acc:.3f} ± {r.acc_se:.3f}  well-formed {r.well_formed:.3f}"
                     f"  values {r.values_acc:.3f}  loss {r.loss if r.loss is None else round(r.loss, 4)}"
                     f"  ({r.seconds:.1f} s)")
    return "\n".join(lines)


def probe(
    ckpt: Path | None = typer.Argument(None, help="HF checkpoint folder"),
    splits: str = typer.Option("id,ood", help="comma-separated: id,ood"),
    n: int = typer.Option(500, help="hands per split (0: every eligible hand)"),
    fmt: str = typer.Option("compact", "--format", help="compact (organism) or paper (chat template)"),
    seed: int = typer.Option(0, help="probe-set seed"),
    batch_size: int = typer.Option(256, help="prompts per generate call"),
    max_turns: int = typer.Option(1, help=">1 adds the multi-turn episode success rate"),
    mode: str = typer.Option("greedy", help="greedy or sample"),
    watch: Path | None = typer.Option(None, help="probe each new checkpoint-* folder under DIR"),
    interval: float = typer.Option(10.0, help="--watch: seconds between scans"),
    once: bool = typer.Option(False, help="--watch: exit after probing what exists now"),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Probe a checkpoint on the ID and OOD sets (accuracy ± SE, well-formed, values, loss)."""
    from spindoctor.probes.core import probe_model
    from spindoctor.probes.load import load_causal_lm

    if (ckpt is None) == (watch is None):
        raise UserError("give either CKPT or --watch DIR")
    cfg = _probe_config(splits, n, fmt, seed, batch_size, max_turns, mode)
    if watch is not None:
        _watch(watch, cfg, interval, once, as_json, device)
        return
    model, tokenizer = load_causal_lm(ckpt, device=device)
    with _probe_bar(ckpt.name, disable=as_json) as tick:
        results = probe_model(model, tokenizer, cfg, progress=tick)
    _emit({s: r.to_dict() for s, r in results.items()}, as_json, _probe_text(str(ckpt), results))


def _watch(folder: Path, cfg, interval: float, once: bool, as_json: bool, device: str = "auto") -> None:
    """Probe every complete ``checkpoint-<step>`` under ``folder`` once, in step order;
    rows go to ``folder/probe_metrics.jsonl`` (stage "watch")."""
    from spindoctor.io import append_jsonl, read_jsonl
    from spindoctor.probes.core import metrics_row, probe_model
    from spindoctor.probes.load import load_causal_lm

    if not folder.is_dir():
        raise UserError(f"--watch folder not found: {folder}")
    log = folder / "probe_metrics.jsonl"
    seen = {int(r["step"]) for r in read_jsonl(log)} if log.exists() else set()
    while True:
        found = sorted((int(p.name.split("-")[1]), p) for p in folder.glob("checkpoint-*")
                       if p.is_dir() and p.name.split("-")[1].isdigit())
        for step, path in found:
            if step in seen or not (path / "config.json").exists() or not any(path.glob("*.safetensors")):
                continue
            if time.time() - max(f.stat().st_mtime for f in path.iterdir()) < 2.0:
                continue  # still being written; next scan
            model, tokenizer = load_causal_lm(path, device=device)
            with _probe_bar(path.name, disable=as_json) as tick:
                results = probe_model(model, tokenizer, cfg, progress=tick)
            for split in cfg.splits:
                append_jsonl(log, metrics_row("watch", step, results[split]))
            seen.add(step)
            _emit({"step": step, **{s: r.to_dict() for s, r in results.items()}}, as_json,
                  _probe_text(str(path), results))
        if once:
            return
        time.sleep(interval)


def sft(
    base: Path = typer.Option(..., help="base checkpoint folder"),
    out: Path = typer.Option(..., help="run folder, e.g. runs/NAME/sft"),
    preset: str = typer.Option("organism", help="organism or chat"),
    seed: int = typer.Option(0, help="data and trainer seed"),
    steps: int | None = typer.Option(None, help="optimizer steps"),
    lr: float | None = typer.Option(None, help="peak learning rate"),
    batch_size: int | None = typer.Option(None, help="examples per step"),
    grad_accum_steps: int | None = typer.Option(None, help="micro-batches per step (batch-size must divide by it)"),
    fmt: str | None = typer.Option(None, "--format", help="compact or paper"),
    probe_n: int | None = typer.Option(None, help="probe hands per split (0: all)"),
    probe_every: int | None = typer.Option(None, help="steps between probes after the dense phase"),
    report_to: str = typer.Option("none", help="comma list: tensorboard,wandb,mlflow or none"),
    threads: int | None = typer.Option(None, help="torch CPU threads (default 2)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """SFT on the ID rule with ID/OOD probes and a checkpoint at every probe step."""
    from spindoctor.probes.core import ProbeConfig
    from spindoctor.training.sft import resolve_config, run_sft

    if fmt is not None and fmt not in ("compact", "paper"):
        raise UserError(f"--format must be compact or paper, got {fmt!r}")
    probe_cfg = None if probe_n is None else ProbeConfig(n=probe_n if probe_n > 0 else None)
    cfg = resolve_config(preset, base=str(base), out=str(out), seed=seed, steps=steps, lr=lr,
                         batch_size=batch_size, grad_accum_steps=grad_accum_steps, fmt=fmt, probe=probe_cfg, probe_every=probe_every, threads=threads,
                         report_to=[s.strip() for s in report_to.split(",") if s.strip()])
    summary = run_sft(cfg, say=(lambda s: None) if as_json else typer.echo)
    _emit(summary, as_json, f"done: {out} ({summary['steps']} steps, {summary['seconds']:.0f} s)")


def select(
    run_dir: Path = typer.Argument(..., help="SFT run folder with metrics.jsonl"),
    window: int = typer.Option(3, help="probe points pooled per smoothed value (odd)"),
    z: float = typer.Option(2.0, help="standard errors for rise/decline"),
    as_json: bool = typer.Option(False, "--json", help="print selection.json"),
) -> None:
    """Pick the OOD-peak, middle and end checkpoints; write selection.json."""
    from spindoctor.training.select import select_run

    if window < 1 or window % 2 == 0:
        raise UserError(f"--window must be odd and >= 1, got {window}")
    sel = select_run(run_dir, window=window, z=z)
    text = [f"shape: {sel['shape']} (rise {sel['rise_z']:.1f} SE, decline {sel['decline_z']:.1f} SE)"]
    for name in ("peak", "middle", "end"):
        e = sel[name]
        text.append(f"{name:<6} step {e['step']:>4}  OOD {e['ood_acc']:.3f} ± {e['ood_acc_se']:.3f}"
                    f" (pooled {e['ood_smoothed']:.3f}, 95% CI {e['ood_smoothed_ci95'][0]:.3f}-"
                    f"{e['ood_smoothed_ci95'][1]:.3f})  ID {e.get('id_acc', float('nan')):.3f}")
    text.append(f"wrote {run_dir / 'selection.json'}")
    _emit({k: v for k, v in sel.items() if k != "curve"}, as_json, "\n".join(text))


def register(app: typer.Typer) -> None:
    """Attach ``organism``, ``probe``, ``sft`` and ``select`` to the root app."""
    app.add_typer(organism_app, name="organism")
    app.command("probe")(probe)
    app.command("sft")(sft)
    app.command("select")(select)
