"""``spindoctor restore`` and ``spindoctor sweep layers|ranks|impose``.

Options left unset take the defaults of :class:`~spindoctor.restore.plan.RestorePlan`,
:class:`~spindoctor.restore.run.SweepConfig` and
:class:`~spindoctor.probes.core.ProbeConfig` (the one source of each default).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from spindoctor.errors import UserError, first_error
from spindoctor.probes.core import ProbeConfig
from spindoctor.restore.plan import RestorePlan
from spindoctor.restore.run import SweepConfig


def _default(model, field: str) -> str:
    """``(default: X)`` for a help text, read from the config model (the one source)."""
    info = model.model_fields[field]
    value = info.default_factory() if info.default_factory else info.default
    return f"(default: {','.join(f'{v:g}' for v in value) if isinstance(value, list) else value})"


sweep_app = typer.Typer(help="Restoration sweeps evaluated with the ID/OOD probes.", no_args_is_help=True)

Ref = Annotated[Path, typer.Argument(help="Reference checkpoint folder (base, or SFT at the OOD peak).")]
Tuned = Annotated[Path, typer.Argument(help="Fine-tuned checkpoint folder to edit.")]
Matrices = Annotated[str | None, typer.Option(
    help=f"Matrix preset: paper, attn, mlp, linear, all {_default(SweepConfig, 'matrices')}.")]
Mode = Annotated[str | None, typer.Option(
    help=f"direction (keep tuned singular values) or full {_default(SweepConfig, 'mode')}.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _given(**fields) -> dict:
    """The fields whose option was given (the config model fills the others)."""
    return {k: v for k, v in fields.items() if v is not None}


def _k(text: str | None):
    from spindoctor.restore.select import parse_k

    return None if text is None else parse_k(text)


def _validated(model_cls, explicit: dict | None = None, **fields):
    """``model_cls`` from the given fields (and ``explicit`` ones, even when None), flag errors as one line."""
    from pydantic import ValidationError

    try:
        return model_cls(**_given(**fields), **(explicit or {}))
    except ValidationError as exc:
        where, msg = first_error(exc)
        raise UserError(f"--{where.replace('.', '-').replace('_', '-')}: {msg.removeprefix('Value error, ')}") from None


def restore(
    ref: Ref,
    tuned: Tuned,
    out: Annotated[Path, typer.Option(
        help="Output checkpoint folder: new, empty, or a previous restore output (replaced whole).")],
    layers: Annotated[str | None, typer.Option(
        help=f"all, none, 0-9, 0,3,5-7, first:25%, last:25%, middle:50% {_default(RestorePlan, 'layers')}.")] = None,
    matrices: Matrices = None,
    regex: Annotated[str | None, typer.Option(help="Keep only tensor names matching this regex.")] = None,
    top_k: Annotated[str | None, typer.Option(
        "--top-k", help=f"Leading directions from REF: count, fraction or % {_default(RestorePlan, 'k_top')}.")] = None,
    tail_k: Annotated[str | None, typer.Option(
        "--tail-k", help=f"Trailing directions from REF {_default(RestorePlan, 'k_tail')}.")] = None,
    mode: Mode = None,
    embeddings: Annotated[bool, typer.Option(help="Also restore embeddings and lm_head.")] = False,
    dtype: Annotated[str | None, typer.Option(help="Factorisation dtype: float32 or float64.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Factorisation cache folder.")] = None,
    as_json: Json = False,
) -> None:
    """Write a complete HF checkpoint: TUNED with REF's singular directions on the chosen layers and ranks."""
    from spindoctor.restore.checkpoint import restore_checkpoint

    if dtype is not None and dtype not in ("float32", "float64"):
        raise UserError(f"--dtype must be float32 or float64, got {dtype!r}")
    plan = _validated(RestorePlan, layers=layers, matrices=matrices, regex=regex, embeddings=embeddings or None,
                      k_top=_k(top_k), k_tail=_k(tail_k), mode=mode)
    record = restore_checkpoint(ref, tuned, out, plan, cache_dir, progress=not as_json, **_given(dtype=dtype))
    if as_json:
        typer.echo(json.dumps({k: v for k, v in record.items() if k != "matrices"} | {
            "n_matrices": len(record["matrices"]), "out": str(out)}))
    else:
        typer.echo(f"restored {len(record['matrices'])} matrices of {tuned} towards {ref} -> {out} "
                   f"({record['seconds']:.1f} s; edit record {out / 'restore.json'})")


def _run(kind: str, ref: Path, tuned: Path, out: Path, as_json: bool, **fields) -> None:
    from spindoctor.restore.run import run_sweep

    probe = _validated(ProbeConfig, n=fields.pop("n"), fmt=fields.pop("fmt"), batch_size=fields.pop("batch_size"),
                       max_new_tokens=fields.pop("max_new_tokens"))
    from spindoctor.models.load import check_model_folder

    for folder in (ref, tuned):  # both are probed: config, weights and tokenizer must be sound
        check_model_folder(folder)
    cache_dir = fields.get("cache_dir")
    if cache_dir is not None and Path(cache_dir).exists() and not Path(cache_dir).is_dir():
        raise UserError(f"--cache-dir {cache_dir} exists and is not a folder")
    explicit = {"blocks": fields.pop("blocks")} if fields.get("block_size") is not None else {}
    cfg = _validated(SweepConfig, explicit, kind=kind, ref=str(ref), tuned=str(tuned), probe=probe, **fields)
    record = run_sweep(cfg, out, progress=not as_json)
    if as_json:
        typer.echo(json.dumps({"out": str(out), "rows": record["rows"]}))
        return
    typer.echo(f"{'point':<16} {'ID acc':>14} {'OOD acc':>14} {'OOD recovered':>14}")
    for r in record["rows"]:
        rec = r.get("ood_recovered")
        typer.echo(f"{r['point']:<16} {r['id_acc']:>7.3f} ±{r['id_acc_se']:.3f} {r['ood_acc']:>7.3f} ±{r['ood_acc_se']:.3f} "
                   f"{'' if rec is None else f'{rec:+.0%}':>14}")
    typer.echo(f"wrote {out / 'sweep.json'}, {out / 'sweep.csv'}, {out / 'sweep.png'}")


Out = Annotated[Path, typer.Option(
    help="Folder for sweep.json, sweep.csv and sweep.png: new, empty, or a previous sweep's (replaced whole).")]
N = Annotated[int | None, typer.Option(help=f"Probe hands per split {_default(ProbeConfig, 'n')}.")]
Fmt = Annotated[str | None, typer.Option(
    "--format", help=f"Prompt format: compact (organism) or paper {_default(ProbeConfig, 'fmt')}.")]
Blocks = Annotated[int | None, typer.Option(help=f"Number of equal layer blocks {_default(SweepConfig, 'blocks')}.")]
BlockSize = Annotated[int | None, typer.Option(help="Layers per block (instead of --blocks).")]
Batch = Annotated[int | None, typer.Option(help=f"Probe prompts per generate call {_default(ProbeConfig, 'batch_size')}.")]
NewTokens = Annotated[int | None, typer.Option(help="Tokens per probe answer (default: 48 compact, 256 paper).")]


@sweep_app.command()
def layers(ref: Ref, tuned: Tuned, out: Out, blocks: Blocks = None, block_size: BlockSize = None,
           matrices: Matrices = None, top_k: Annotated[str | None, typer.Option("--top-k")] = None,
           mode: Mode = None, n: N = None, fmt: Fmt = None, batch_size: Batch = None,
           max_new_tokens: NewTokens = None, cache_dir: Annotated[str | None, typer.Option()] = None,
           as_json: Json = False) -> None:
    """Restore one block of layers at a time (paper Figure 5)."""
    _run("layers", ref, tuned, out, as_json, **_blocks(blocks, block_size), matrices=matrices, k_top=_k(top_k),
         mode=mode, n=n, fmt=fmt, batch_size=batch_size, max_new_tokens=max_new_tokens, cache_dir=cache_dir)


def _blocks(blocks: int | None, block_size: int | None) -> dict:
    """--block-size replaces --blocks (then blocks is None); neither: SweepConfig's blocks."""
    if block_size is not None:  # 0 included: SweepConfig refuses it, never ignores it
        return {"blocks": None, "block_size": block_size}
    return {"blocks": blocks, "block_size": None}


@sweep_app.command()
def ranks(ref: Ref, tuned: Tuned, out: Out,
          ks: Annotated[str | None, typer.Option(
              help=f"Comma-separated k_top values: counts, fractions or % {_default(SweepConfig, 'ks')}.")] = None,
          matrices: Matrices = None, mode: Mode = None, n: N = None, fmt: Fmt = None,
          batch_size: Batch = None, max_new_tokens: NewTokens = None,
          cache_dir: Annotated[str | None, typer.Option()] = None, as_json: Json = False) -> None:
    """Restore the top-k directions of every layer, for several k (paper Figure 6)."""
    values = None if ks is None else [_k(k) for k in ks.split(",") if k.strip()]
    _run("ranks", ref, tuned, out, as_json, ks=values,
         matrices=matrices, mode=mode, n=n, fmt=fmt, batch_size=batch_size, max_new_tokens=max_new_tokens,
         cache_dir=cache_dir)


@sweep_app.command()
def impose(sft: Annotated[Path, typer.Argument(help="SFT checkpoint: the directions to impose.")],
           rl: Annotated[Path, typer.Argument(help="RL checkpoint to edit.")], out: Out, blocks: Blocks = None,
           block_size: BlockSize = None, matrices: Matrices = None, n: N = None, fmt: Fmt = None,
           batch_size: Batch = None, max_new_tokens: NewTokens = None,
           cache_dir: Annotated[str | None, typer.Option()] = None, as_json: Json = False) -> None:
    """Impose the SFT checkpoint's singular directions on the RL model (paper Figure 7)."""
    _run("impose", sft, rl, out, as_json, **_blocks(blocks, block_size),
         matrices=matrices, n=n, fmt=fmt, batch_size=batch_size, max_new_tokens=max_new_tokens, cache_dir=cache_dir)
