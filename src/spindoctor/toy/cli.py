"""``spindoctor toy rotation``: the appendix's gauge argument, in numbers and a figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Small demonstrations of the study's arguments.", no_args_is_help=True)


def run_toy(out: Path, seed: int = 0, shift: float = 0.05) -> dict:
    """Run both parts of the toy, write toy.json and toy.png into ``out``, return the numbers."""
    from spindoctor.io import atomic_path, atomic_write_json
    from spindoctor.toy.figure import plot_toy
    from spindoctor.toy.rotation import gauge_identity, train_two_factor

    result = train_two_factor(shift=shift, seed=seed)
    numbers = {"gauge_identity": gauge_identity(seed=seed), "fine_tune": result.summary(),
               "angles_A_deg": result.angles_A_deg.round(3).tolist(),
               "sv_rel_change_A": result.sv_rel_change_A.tolist()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "toy.json", numbers)
    with atomic_path(out / "toy.png") as tmp:
        plot_toy(result, tmp)
    return numbers


@app.command()
def rotation(
    out: Annotated[Path, typer.Option(help="Folder for toy.json and toy.png.")] = Path("runs/toy"),
    seed: int = 0,
    shift: Annotated[float, typer.Option(help="Relative size of the fine-tuning task change.")] = 0.05,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show that (A R)(R^T B) = A B, and that fine-tuning rotates vectors more than it moves values."""
    numbers = run_toy(out, seed, shift)
    if as_json:
        typer.echo(json.dumps({k: numbers[k] for k in ("gauge_identity", "fine_tune")}))
        return
    g, f = numbers["gauge_identity"], numbers["fine_tune"]
    typer.echo(
        f"gauge: ||(AR)(R^T B) - AB|| / ||AB|| = {g['product_rel_error']:.1e}; singular values of A "
        f"moved {g['sv_max_rel_change_A']:.1e}; right singular vectors turned {g['mean_angle_right_vectors_A_deg']:.1f} deg\n"
        f"fine-tune (task shift {f['task_rel_change']:.1%}): product moved {f['product_rel_change']:.1%}, "
        f"singular values of A moved {f['sv_mean_rel_change_A']:.2%} on average (max {f['sv_max_rel_change_A']:.1%}), "
        f"singular vectors turned {f['angle_head_mean_deg']:.1f} deg (head quarter) to "
        f"{f['angle_tail_mean_deg']:.1f} deg (tail quarter)\n"
        f"wrote {out / 'toy.json'} and {out / 'toy.png'}"
    )
