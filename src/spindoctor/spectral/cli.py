"""``spindoctor drift REF TUNED --out DIR``: the spectral drift command (imports torch lazily).

Options default to None: :class:`~spindoctor.spectral.run.DriftConfig` fills
what is not given, so it stays the one source of defaults (the help text reads
them from it). Every input is checked before any work, and a bad one is a
one-line error naming its flag (exit 2) with nothing written.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Annotated

import typer

from spindoctor.errors import UserError
from spindoctor.spectral.run import DriftConfig

# config field -> flag, for error messages
FLAGS = {"matrices": "--matrices", "regex": "--regex", "k": "--k", "device": "--device", "dtype": "--dtype",
         "method": "--method", "rank": "--rank", "workers": "--workers", "cache_dir": "--cache",
         "figures": "--figures", "figure_matrices": "--figure-matrix"}


def _default(name: str) -> str:
    """The default of a DriftConfig field, for help texts."""
    field = DriftConfig.model_fields[name]
    value = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def drift_cmd(
    ref: Annotated[Path, typer.Argument(help="Reference checkpoint folder (or .safetensors file).")],
    tuned: Annotated[Path, typer.Argument(help="Tuned checkpoint folder with the same architecture.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (metrics.json, per_matrix.csv, figures); "
                                      "a previous drift output there is replaced whole.")] = Path("runs/drift"),
    matrices: Annotated[str | None, typer.Option(
        help=f"Preset: paper, attn, mlp, linear, all (default: {_default('matrices')}).")] = None,
    regex: Annotated[str | None, typer.Option(help="Keep tensor names matching this regex.")] = None,
    k: Annotated[str | None, typer.Option(
        help=f"Top-k sizes: fractions (0.25) or counts (64), comma-separated (default: {_default('k')}).")] = None,
    device: Annotated[str | None, typer.Option(
        help=f"auto, cpu, cuda or cuda:N (default: {_default('device')}).")] = None,
    dtype: Annotated[str | None, typer.Option(help=f"float32 or float64 (default: {_default('dtype')}).")] = None,
    method: Annotated[str | None, typer.Option(
        help=f"auto, gram, svd or randomized (default: {_default('method')}).")] = None,
    rank: Annotated[int | None, typer.Option(help="Top-k rank for --method randomized.")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Matrices at once on CPU (default: min(torch threads, 4)).", min=1)
    ] = None,
    cache: Annotated[Path | None, typer.Option(
        help="Factorisation cache folder (default: $SPINDOCTOR_CACHE/svd or ~/.cache/spindoctor/svd).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the cache.")] = False,
    figures: Annotated[bool | None, typer.Option("--figures/--no-figures", help="Write PNG figures (default: on).")
                       ] = None,
    figure_matrix: Annotated[
        list[str] | None, typer.Option("--figure-matrix", help="Regex of a matrix to plot (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary instead of text.")] = False,
) -> None:
    """Singular-value and singular-vector drift of every selected matrix between two checkpoints."""
    from spindoctor.spectral.outputs import check_out
    from spindoctor.spectral.run import check_inputs

    if no_cache and cache is not None:
        raise UserError("--cache and --no-cache cannot be used together")
    given = {"matrices": matrices, "regex": regex, "k": _parse_k(k) if k is not None else None, "device": device,
             "dtype": dtype, "method": method, "rank": rank, "workers": workers, "figures": figures,
             "cache_dir": cache, "figure_matrices": figure_matrix}
    cfg = config_from_flags({key: v for key, v in given.items() if v is not None}
                            | ({"cache_dir": None} if no_cache else {}))
    check_out(out, label="--out")
    _check_paths(out, cfg)
    check_inputs(cfg)
    with warnings.catch_warnings():  # one line per warning (a recomputed cache entry), no source line
        warnings.showwarning = lambda message, category, *args, **kwargs: typer.echo(
            f"warning: {message}", err=True)
        result = _run(ref, tuned, cfg, quiet=as_json)
    paths = result.save(out, figures=cfg.figures, figure_matrices=cfg.figure_matrices)
    overall = result.summary["overall"]
    if as_json:
        typer.echo(json.dumps({"out": str(out), "n_matrices": len(result.rows), "seconds": result.meta["seconds"],
                               "cache_hits": result.meta["cache"]["hits"], "overall": overall,
                               "files": [str(p) for p in paths]}))
        return
    typer.echo(f"{len(result.rows)} matrices in {result.meta['seconds']:.1f} s "
               f"({result.meta['cache']['hits']} cached factorisations); wrote {out}/")
    for key, val in overall.items():
        if val is not None:
            typer.echo(f"  {key:<22} {val:.4g}")


def config_from_flags(values: dict) -> DriftConfig:
    """A :class:`DriftConfig` from the flags given; a refused value is a UserError naming its flag."""
    from pydantic import ValidationError

    from spindoctor.errors import first_error

    try:
        return DriftConfig(**values)
    except ValidationError as exc:
        where, msg = first_error(exc)
        msg, field = msg.removeprefix("Value error, "), where.split(".")[0]
        if field not in FLAGS:  # a check across options: name every flag it mentions
            raise UserError(re.sub(r"\b(" + "|".join(FLAGS) + r")\b", lambda m: FLAGS[m[1]], msg)) from None
        value = values.get(field)
        shown = f" {value!r}" if isinstance(value, str | int) and repr(value) not in msg else ""
        raise UserError(f"{FLAGS[field]}{shown}: {msg}") from None


def _check_paths(out: Path, cfg: DriftConfig) -> None:
    if cfg.cache_dir is not None and cfg.cache_dir.exists() and not cfg.cache_dir.is_dir():
        raise UserError(f"--cache {cfg.cache_dir} exists and is not a folder")
    if out.exists() and cfg.cache_dir is not None and out.resolve() == cfg.cache_dir.resolve():
        raise UserError("--out and --cache must be different folders")


def _run(ref: Path, tuned: Path, cfg: DriftConfig, quiet: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from spindoctor.spectral.run import drift

    with Progress(
        TextColumn("[bold]drift"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.description}"), transient=True, disable=quiet,
    ) as bar:
        task = bar.add_task("", total=None)

        def tick(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=name)

        return drift(ref, tuned, cfg, progress=tick)


def _parse_k(text: str) -> list[float | int]:
    """--k as a list (the values are checked by DriftConfig); a malformed one is a one-line UserError."""
    from spindoctor.spectral.run import parse_k

    try:
        return parse_k(text)
    except UserError as exc:
        raise UserError(f"--{exc}") from None
