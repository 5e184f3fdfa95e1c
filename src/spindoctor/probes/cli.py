"""``spindoctor probe``: probe one checkpoint, or every new checkpoint of a run folder (``--watch``).

A thin command over :mod:`spindoctor.probes`; torch and transformers are
imported inside the command (``spindoctor game ...`` never loads them). Options
left unset take :class:`~spindoctor.probes.core.ProbeConfig`'s defaults.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import typer

from spindoctor.errors import UserError
from spindoctor.probes.core import ProbeConfig


def _default(field: str) -> str:
    """``(default: X)`` for a help text, read from :class:`ProbeConfig` (the one source)."""
    info = ProbeConfig.model_fields[field]
    value = info.default_factory() if info.default_factory else info.default
    return f"(default: {','.join(value) if isinstance(value, list) else value})"


def _emit(obj: dict, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2) if as_json else text)


def _probe_config(splits: str | None, n: int | None, fmt: str | None, seed: int | None, batch_size: int | None,
                  max_turns: int | None, mode: str | None):
    """The :class:`ProbeConfig` of the flags given; unset flags keep the model's defaults."""
    values: dict = {"seed": seed, "batch_size": batch_size, "max_turns": max_turns}
    if splits is not None:
        names = [s.strip() for s in splits.split(",") if s.strip()]
        if not names or any(s not in ("id", "ood") for s in names):
            raise UserError(f"--splits takes id,ood; got {splits!r}")
        values["splits"] = names
    if fmt is not None and fmt not in ("compact", "paper"):
        raise UserError(f"--format must be compact or paper, got {fmt!r}")
    if mode is not None and mode not in ("greedy", "sample"):
        raise UserError(f"--mode must be greedy or sample, got {mode!r}")
    values = {k: v for k, v in {**values, "fmt": fmt, "mode": mode}.items() if v is not None}
    if n is not None:
        values["n"] = n if n > 0 else None  # 0: every eligible hand
    return ProbeConfig(**values)


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
    splits: str | None = typer.Option(None, help=f"comma-separated: id,ood {_default('splits')}"),
    n: int | None = typer.Option(None, help=f"hands per split, 0: every eligible hand {_default('n')}"),
    fmt: str | None = typer.Option(None, "--format", help=f"compact (organism) or paper (chat template) {_default('fmt')}"),
    seed: int | None = typer.Option(None, help=f"probe-set seed {_default('seed')}"),
    batch_size: int | None = typer.Option(None, help=f"prompts per generate call {_default('batch_size')}"),
    max_turns: int | None = typer.Option(None, help=f">1 adds the multi-turn episode success rate {_default('max_turns')}"),
    mode: str | None = typer.Option(None, help=f"greedy or sample {_default('mode')}"),
    watch: Path | None = typer.Option(None, help="probe each new checkpoint folder of the run folder DIR"),
    interval: float = typer.Option(10.0, help="--watch: seconds between scans"),
    once: bool = typer.Option(False, help="--watch: exit after probing what exists now"),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Probe a checkpoint on the ID and OOD sets (accuracy ± SE, well-formed, values, loss)."""
    from spindoctor.devices import resolve_device
    from spindoctor.models.load import load_causal_lm
    from spindoctor.probes.core import probe_model

    if (ckpt is None) == (watch is None):
        raise UserError("give either CKPT or --watch DIR")
    cfg = _probe_config(splits, n, fmt, seed, batch_size, max_turns, mode)
    device = resolve_device(device)  # an absent device is one line before any work
    if watch is not None:
        _watch(watch, cfg, interval, once, as_json, device)
        return
    model, tokenizer = load_causal_lm(ckpt, device=device)  # checks the folder (check_model_folder) first
    with _probe_bar(ckpt.name, disable=as_json) as tick:
        results = probe_model(model, tokenizer, cfg, progress=tick)
    _emit({s: r.to_dict() for s, r in results.items()}, as_json, _probe_text(str(ckpt), results))


def _watch(folder: Path, cfg, interval: float, once: bool, as_json: bool, device: str = "auto") -> None:
    """Probe every complete checkpoint folder under ``folder`` once, in step order;
    rows go to ``folder/probe_metrics.jsonl`` (stage "watch")."""
    from spindoctor.io import append_jsonl, read_jsonl
    from spindoctor.models.checkpoints import is_complete, list_checkpoints
    from spindoctor.models.load import load_causal_lm
    from spindoctor.probes.core import metrics_row, probe_model

    if not folder.is_dir():
        raise UserError(f"--watch folder not found: {folder}" if not folder.exists() else f"--watch {folder} is not a folder")
    log = folder / "probe_metrics.jsonl"
    seen = {int(r["step"]) for r in read_jsonl(log)} if log.exists() else set()
    while True:
        for step, path in list_checkpoints(folder):
            if step in seen or not is_complete(path):
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
