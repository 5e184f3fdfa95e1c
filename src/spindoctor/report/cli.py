"""``spindoctor early-warning RUN...``: the spectral early warning of one or more SFT runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from spindoctor.errors import UserError


def early_warning_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Study runs (with sft/) or a multi-seed folder (seed-*/).")],
    out: Annotated[Path | None, typer.Option(help="Write early_warning.json and early_warning.md to this new "
                                             "or empty folder.")] = None,
    dtype: Annotated[str, typer.Option(help="float64 (default) or float32 factors.")] = "float64",
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
) -> None:
    """Per SFT checkpoint, the drift from the base beside OOD accuracy and loss: does drift cross a
    threshold before OOD falls significantly? (docs/design.md, "Spectral early warning")"""
    from transformers.utils import logging as hf_logging

    from spindoctor.io import atomic_write_json, atomic_write_text
    from spindoctor.report.early_warning import early_warning, find_runs, table_markdown

    hf_logging.disable_progress_bar()  # one model load per checkpoint: no bar each

    if dtype not in ("float32", "float64"):
        raise UserError(f"--dtype must be float32 or float64, not {dtype!r}")
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not an empty folder")
    result = early_warning(find_runs(runs), dtype=dtype, progress=not as_json)
    table = table_markdown(result)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "early_warning.json", result)
        atomic_write_text(out / "early_warning.md", table)
    typer.echo(json.dumps(result, indent=2) if as_json else table)
