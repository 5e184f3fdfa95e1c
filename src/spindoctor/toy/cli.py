"""``spindoctor toy rotation``: the appendix's gauge argument, in numbers and a figure.

Options default to None and :class:`~spindoctor.toy.run.ToyConfig` fills them
(the one source of defaults); a bad value is one line naming its flag, exit 2,
nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from spindoctor.errors import UserError
from spindoctor.toy.run import ToyConfig, run_toy

__all__ = ["app", "rotation", "run_toy"]  # run_toy: the library function, re-exported for older callers

app = typer.Typer(help="Small demonstrations of the study's arguments.", no_args_is_help=True)
_DEFAULTS = ToyConfig()


@app.command()
def rotation(
    out: Annotated[Path, typer.Option(help="Folder for toy.json and toy.png.")] = Path("runs/toy"),
    seed: Annotated[int | None, typer.Option(help=f"Random seed, >= 0 (default: {_DEFAULTS.seed}).")] = None,
    shift: Annotated[float | None, typer.Option(
        help=f"Relative size of the fine-tuning task change, in [0, 1] (default: {_DEFAULTS.shift}).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show that (A R)(R^T B) = A B, and that fine-tuning rotates vectors more than it moves values."""
    from pydantic import ValidationError

    from spindoctor.errors import first_error
    from spindoctor.toy.run import check_out

    given = {k: v for k, v in {"seed": seed, "shift": shift}.items() if v is not None}
    try:
        cfg = ToyConfig(**given)
    except ValidationError as exc:
        where, msg = first_error(exc)
        raise UserError(f"--{where} {given.get(where)!r}: {msg}") from None
    check_out(out, label="--out")
    numbers = run_toy(out, cfg)
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
