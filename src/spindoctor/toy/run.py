"""``run_toy``: both parts of the rotation toy, written as toy.json and toy.png.

:class:`ToyConfig` is the one source of the toy's defaults (the CLI and the
study fill it). The output folder is replaced as a set, like drift's: written
into a temporary sibling, then renamed into place; an existing folder holding
anything but toy.json and toy.png is refused.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spindoctor.errors import UserError, first_error

OUTPUT_FILES = ("toy.json", "toy.png")


class ToyConfig(BaseModel):
    """Options of the rotation toy."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, description="Seed of numpy's generator (factors, rotation, task).")
    shift: float = Field(0.05, ge=0.0, le=1.0, allow_inf_nan=False,
                         description="Relative size of the fine-tuning task change, ||T' - T|| / ||T||, in [0, 1].")


def toy_config(config: ToyConfig | None = None, **overrides) -> ToyConfig:
    """``config`` (or the defaults) updated by ``overrides``; UserError naming the parameter if invalid."""
    try:
        return ToyConfig.model_validate({**(config or ToyConfig()).model_dump(), **overrides})
    except ValidationError as exc:
        where, msg = first_error(exc)
        raise UserError(f"bad toy option {where}: {msg}") from None


def check_out(out: Path, label: str = "out") -> None:
    """Refuse (UserError) an ``out`` the toy may not replace; nothing is written."""
    from spindoctor.io import foreign_entries

    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"{label} {out} exists and is not a folder")
    if out.is_dir() and foreign_entries(out, OUTPUT_FILES):
        raise UserError(f"{label} {out} holds files other than {' and '.join(OUTPUT_FILES)}; choose a new or empty folder")


def run_toy(out: str | Path, config: ToyConfig | None = None, **overrides) -> dict:
    """Run both parts of the toy, write toy.json and toy.png into ``out`` (as a set), return the numbers.

    ``overrides`` update ``config``: ``run_toy(out, seed=3)``.
    """
    import json

    from spindoctor.io import atomic_dir
    from spindoctor.toy.figure import plot_toy
    from spindoctor.toy.rotation import gauge_identity, train_two_factor

    cfg, out = toy_config(config, **overrides), Path(out)
    check_out(out)
    result = train_two_factor(shift=cfg.shift, seed=cfg.seed)
    numbers = {"gauge_identity": gauge_identity(seed=cfg.seed), "fine_tune": result.summary(),
               "angles_A_deg": result.angles_A_deg.round(3).tolist(),
               "sv_rel_change_A": result.sv_rel_change_A.tolist(), "config": cfg.model_dump()}
    try:
        with atomic_dir(out, owned=OUTPUT_FILES) as tmp:
            (tmp / "toy.json").write_text(json.dumps(numbers, indent=2) + "\n", encoding="utf-8")
            plot_toy(result, tmp / "toy.png")
    except FileExistsError as exc:  # out changed while we worked: nothing was replaced
        raise UserError(str(exc)) from None
    return numbers
