"""``spindoctor arena``: every cheap repair of OOD lost after SFT, scored on the same probes.

Options left unset take the defaults of :class:`~spindoctor.arena.config.ArenaConfig`
and :class:`~spindoctor.probes.core.ProbeConfig` (the one source of each default).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from spindoctor.arena.config import METHODS, ArenaConfig, default_grids
from spindoctor.errors import UserError, first_error
from spindoctor.probes.core import ProbeConfig


def _given(**fields) -> dict:
    return {k: v for k, v in fields.items() if v is not None}


def _validated(model_cls, **fields):
    from pydantic import ValidationError

    try:
        return model_cls(**_given(**fields))
    except ValidationError as exc:
        where, msg = first_error(exc)
        raise UserError(f"--{where.split('.')[0].replace('_', '-')}: {msg.removeprefix('Value error, ')}") from None


def parse_grids(specs: list[str] | None) -> dict[str, list[float]] | None:
    """``["wise-ft=0.2,0.5", "soup=1"]`` -> ``{"wise-ft": [0.2, 0.5], "soup": [1.0]}`` (checked by ArenaConfig)."""
    if not specs:
        return None
    grids: dict[str, list[float]] = {}
    for spec in specs:
        method, sep, values = spec.partition("=")
        if not sep:
            raise UserError(f"--grid must be METHOD=V1,V2,... (e.g. wise-ft=0.25,0.5), got {spec!r}")
        try:
            grids[method.strip()] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"--grid {spec!r}: values must be numbers") from None
    return grids


def _with_write(methods: list[str] | None, grids: dict | None, write) -> tuple[list[str] | None, dict | None]:
    """Add the ``--write`` point when the arena lacks it: a method not listed runs that knob only."""
    if write is None:
        return methods, grids
    method, knob = write
    methods = list(methods or [m for m in METHODS if m != "rl"])
    if method == "rl":
        return [*methods, "rl"] if "rl" not in methods else methods, grids
    grids = dict(grids or {})
    if method not in methods:
        methods.append(method)
        grids[method] = [knob]
    values = grids.get(method, default_grids()[method])
    grids[method] = values if knob in values else [*values, knob]
    return methods, grids


def arena(
    base: Annotated[Path, typer.Argument(help="The model before SFT (reference of the recovered shares).")],
    out: Annotated[Path, typer.Option(
        help="Folder for arena.json, arena.csv, arena.png: new, empty, or a previous arena's.")],
    sft_run: Annotated[Path | None, typer.Argument(
        help="SFT run folder (selection.json, checkpoints, metrics.jsonl); optional with --peak and --end.")] = None,
    peak: Annotated[Path | None, typer.Option(help="OOD-peak checkpoint (default: the selection's peak).")] = None,
    end: Annotated[Path | None, typer.Option(help="SFT end checkpoint (default: the selection's end).")] = None,
    methods: Annotated[str | None, typer.Option(help=f"Comma-separated methods: {', '.join(METHODS)} "
                                                     "(default: all but rl).")] = None,
    grid: Annotated[list[str] | None, typer.Option(help="METHOD=V1,V2 knob values (repeatable).")] = None,
    study: Annotated[Path | None, typer.Option(help="Study run folder (its rl/<start>/ runs for the rl method).")] = None,
    matrices: Annotated[str | None, typer.Option(help="Matrix preset of the spectral methods and restore.")] = None,
    reference: Annotated[str | None, typer.Option(
        help="Model whose OOD counts as lost in the recovered shares: base or peak (default: base).")] = None,
    id_tolerance: Annotated[float | None, typer.Option(help="Largest ID accuracy cost of the best point.")] = None,
    n: Annotated[int | None, typer.Option(help="Probe hands per split.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="Prompt format: compact or paper.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Probe prompts per generate call.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Tokens per probe answer.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, auto.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Factorisation cache folder (restore).")] = None,
    write: Annotated[str | None, typer.Option(help="Write METHOD:KNOB (e.g. wise-ft:0.5) as a checkpoint.")] = None,
    write_best: Annotated[bool, typer.Option("--write-best", help="Write the best point as a checkpoint.")] = False,
    model_out: Annotated[Path | None, typer.Option(
        help="Folder of the written checkpoint (default: OUT-model beside OUT).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score WiSE-FT, checkpoint interpolation, soups, spectral thresholds, restoration and RL on one ID-vs-OOD chart."""
    from spindoctor.arena.config import parse_write
    from spindoctor.arena.run import resolve_sources, run_arena

    if write is not None and write_best:
        raise UserError("give --write or --write-best, not both")
    chosen = parse_write(write) if write is not None else None
    names = None if methods is None else [m.strip() for m in methods.split(",") if m.strip()]
    names, grids = _with_write(names, parse_grids(grid), chosen)
    peak_s, end_s = resolve_sources(None if sft_run is None else str(sft_run), _str(peak), _str(end))
    probe = _validated(ProbeConfig, n=n, fmt=fmt, batch_size=batch_size, max_new_tokens=max_new_tokens)
    cfg = _validated(ArenaConfig, base=str(base), end=end_s, peak=peak_s, sft_run=_str(sft_run), study=_str(study),
                     methods=names, grids=grids, matrices=matrices, reference=reference,
                     id_tolerance=id_tolerance, device=device, cache_dir=_str(cache_dir), probe=probe)
    if (chosen or write_best) and model_out is None:
        model_out = out.parent / f"{out.name}-model"
    record = run_arena(cfg, out, progress=not as_json, write=chosen, write_best=write_best, model_out=model_out)
    if as_json:
        keep = ("method", "knob", "label", "id_acc", "ood_acc", "id_cost_est", "ood_acc_recovered_est",
                "ood_acc_recovered_lo", "ood_acc_recovered_hi", "seconds", "pareto", "best")
        typer.echo(json.dumps({"out": str(out), "best": record["best"], "written": record.get("written"),
                               "simple_vs_restore": record["simple_vs_restore"],
                               "rows": [{k: r.get(k) for k in keep} for r in record["rows"]]}))
        return
    _print_table(record, out, model_out if (chosen or write_best) else None)


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _fmt(v, spec: str = "+.3f") -> str:
    return "" if v is None else format(v, spec)


def _print_table(record: dict, out: Path, model_out: Path | None) -> None:
    typer.echo(f"{'point':<30} {'ID acc':>7} {'OOD acc':>7} {'ID cost':>7} {'OOD rec.':>8} {'[95% CI]':>17} {'s':>6}")
    for r in record["rows"]:
        ci = "" if r.get("ood_acc_recovered_lo") is None else \
            f"[{r['ood_acc_recovered_lo']:+.2f}, {r['ood_acc_recovered_hi']:+.2f}]"
        mark = "*" if r.get("best") else ("p" if r.get("pareto") else "")
        typer.echo(f"{r['label']:<30} {_fmt(r.get('id_acc'), '.3f'):>7} {_fmt(r.get('ood_acc'), '.3f'):>7} "
                   f"{_fmt(r.get('id_cost_est')):>7} {_fmt(r.get('ood_acc_recovered_est'), '+.2f'):>8} {ci:>17} "
                   f"{r['seconds']:>6.1f} {mark}")
    typer.echo(f"best (* ; p = Pareto front): {record['best']}")
    if record.get("simple_vs_restore"):
        typer.echo(record["simple_vs_restore"]["sentence"])
    typer.echo(f"wrote {out / 'arena.json'}, {out / 'arena.csv'}, {out / 'arena.png'}")
    if model_out is not None:
        typer.echo(f"wrote the checkpoint {model_out} ({record['written']['label']}; model card README.md)")
