"""``spindoctor drift REF TUNED --out DIR``: the spectral drift command (imports torch lazily)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def drift_cmd(
    ref: Annotated[Path, typer.Argument(help="Reference checkpoint folder (or .safetensors file).")],
    tuned: Annotated[Path, typer.Argument(help="Tuned checkpoint folder with the same architecture.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (metrics.json, per_matrix.csv, figures).")] = Path(
        "runs/drift"
    ),
    matrices: Annotated[str, typer.Option(help="Preset: paper, attn, mlp, linear, all.")] = "paper",
    regex: Annotated[str | None, typer.Option(help="Keep tensor names matching this regex.")] = None,
    k: Annotated[str, typer.Option(help="Top-k sizes: fractions (0.25) or counts (64), comma-separated.")] = "0.25,0.5,1.0",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    dtype: Annotated[str, typer.Option(help="float32 or float64.")] = "float32",
    method: Annotated[str, typer.Option(help="auto, gram, svd or randomized.")] = "auto",
    rank: Annotated[int | None, typer.Option(help="Top-k rank for --method randomized.")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Matrices at once on CPU (default: min(torch threads, 4)).", min=1)
    ] = None,
    cache: Annotated[Path | None, typer.Option(help="Factorisation cache folder.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the cache.")] = False,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Write PNG figures.")] = True,
    figure_matrix: Annotated[
        list[str] | None, typer.Option("--figure-matrix", help="Regex of a matrix to plot (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary instead of text.")] = False,
) -> None:
    """Singular-value and singular-vector drift of every selected matrix between two checkpoints."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from spindoctor.errors import UserError
    from spindoctor.spectral.run import DriftConfig, default_cache_dir, drift, parse_k

    if dtype not in ("float32", "float64"):
        raise UserError(f"--dtype must be float32 or float64, got {dtype!r}")
    if method not in ("auto", "gram", "svd", "randomized"):
        raise UserError(f"--method must be auto, gram, svd or randomized, got {method!r}")
    if method == "randomized" and not rank:
        raise UserError("--method randomized needs --rank")
    if no_cache and cache is not None:
        raise UserError("--cache and --no-cache cannot be used together")
    _valid_k(k)
    cfg = DriftConfig(
        matrices=matrices, regex=regex, k=parse_k(k), device=device, dtype=dtype, method=method, rank=rank,
        workers=workers,
        cache_dir=None if no_cache else (cache or default_cache_dir()), figures=figures,
        figure_matrices=figure_matrix or [],
    )
    with Progress(
        TextColumn("[bold]drift"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.description}"), transient=True, disable=as_json,
    ) as bar:
        task = bar.add_task("", total=None)

        def tick(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=name)

        result = drift(ref, tuned, cfg, progress=tick)
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


def _valid_k(text: str) -> bool:
    """Parse --k once so a bad value is a one-line UserError, not a pydantic trace."""
    from spindoctor.errors import UserError
    from spindoctor.spectral.run import parse_k

    values = parse_k(text)
    for x in values:
        if (isinstance(x, float) and not 0 < x <= 1) or (isinstance(x, int) and x < 1):
            raise UserError(f"--k values are fractions in (0, 1] or counts >= 1, got {x}")
    return True
