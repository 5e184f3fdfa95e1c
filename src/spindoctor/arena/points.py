"""The arena's points: which weights each method and knob produce (docs/design.md, "Arena").

A :class:`Point` names its method, knob and source checkpoints and builds its
weights on demand (``make()``: a full state dict in the SFT end's stored
dtypes, so the model probed is exactly the model ``--write`` saves). States
are read once per checkpoint (safetensors, one tensor at a time) and kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from spindoctor.arena.config import ArenaConfig
from spindoctor.arena.methods import (
    check_states,
    dg_threshold,
    interpolate,
    keep_top_r,
    matrix_state,
    soup,
    wise_ft,
)
from spindoctor.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class Point:
    """One arena point: ``make()`` returns its full state dict (stored names, end's dtypes)."""

    method: str
    knob: float | str | None
    label: str
    sources: list[str]
    make: Callable[[], dict[str, torch.Tensor]] = field(repr=False)
    extra: dict = field(default_factory=dict)  # more row fields (rl: train_seconds)


class States:
    """Full state dicts of checkpoints, read once each (float32 copies, end's dtypes for output)."""

    def __init__(self, end: str):
        from spindoctor.spectral.tensors import Checkpoint

        self.end = Checkpoint(end)
        self._memo: dict[str, dict] = {}
        self._dtypes: dict | None = None

    def get(self, path: str) -> dict:
        import torch

        from spindoctor.spectral.tensors import Checkpoint

        key = str(Path(path).resolve())
        if key not in self._memo:
            ckpt = Checkpoint(path)
            self._memo[key] = {n: ckpt.tensor(n).to(torch.float32) for n in ckpt.names()}
        return self._memo[key]

    def stored(self, state: dict) -> dict:
        """``state`` in the SFT end's stored dtypes."""
        if self._dtypes is None:
            self._dtypes = {n: self.end.tensor(n).dtype for n in self.end.names()}
        return {n: t.to(self._dtypes[n]) for n, t in state.items()}


def check_architectures(paths: dict[str, str]) -> None:
    """UserError unless every checkpoint holds the same tensor names and shapes (headers only)."""
    from spindoctor.spectral.tensors import Checkpoint

    class _Shape:  # check_states reads ``.shape`` only
        def __init__(self, shape):
            self.shape = shape

    shapes = {}
    for label, path in paths.items():
        ckpt = Checkpoint(path)
        shapes[f"{label} ({path})"] = {n: _Shape(ckpt.shape(n)) for n in ckpt.names()}
    try:
        check_states(shapes)
    except ValueError as exc:
        raise UserError(f"mismatched architectures: {exc}") from None


def soup_members(sft_run: str | None, peak: str, w: int) -> list[str]:
    """The SFT checkpoints within ``w`` steps of the OOD peak, in step order (the peak alone when unknown)."""
    from spindoctor.models.checkpoints import list_checkpoints

    run = Path(sft_run) if sft_run else Path(peak).parent
    found = [str(p) for _, p in list_checkpoints(run)]
    where = [i for i, p in enumerate(found) if Path(p).resolve() == Path(peak).resolve()]
    if not where:
        return [peak]
    i = where[0]
    return found[max(0, i - w): i + w + 1]


def train_seconds(run: Path) -> float | None:
    """Sum of the trainer's per-step seconds in ``run``'s train.jsonl (None when absent)."""
    from spindoctor.io import read_jsonl
    from spindoctor.models.checkpoints import TRAIN_LOG_FILE

    if not (run / TRAIN_LOG_FILE).is_file():
        return None
    return round(sum(float(r.get("seconds") or 0) for r in read_jsonl(run / TRAIN_LOG_FILE)), 2)


def rl_runs(study: str) -> list[tuple[str, str]]:
    """``(start, last checkpoint)`` of every RL run of a study, in name order."""
    from spindoctor.models.checkpoints import last_checkpoint

    root = Path(study) / "rl"
    runs = [(p.name, last_checkpoint(p)) for p in sorted(root.iterdir()) if p.is_dir()] if root.is_dir() else []
    runs = [(name, str(ckpt)) for name, ckpt in runs if ckpt is not None]
    if not runs:
        raise UserError(f"no RL run with a checkpoint in {root}: the rl method needs a study's rl/<start>/")
    return runs


def _knob_text(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def build_points(cfg: ArenaConfig, states: States, names: list[str], factors: Callable[[], list]) -> list[Point]:
    """Every point of ``cfg``, in method order.

    ``names`` are the matrices (``cfg.matrices`` preset) the spectral methods edit;
    ``factors()`` gives their base and end factorisations for ``restore`` (lazily).
    """
    from spindoctor.restore.edit import restore_count

    base, end, peak = cfg.base, cfg.end, cfg.peak
    points: list[Point] = []
    for method in cfg.methods:
        for knob in cfg.grids.get(method, []):
            label = f"{method} {_knob_text(knob)}"
            if method == "wise-ft":
                make = (lambda a: lambda: wise_ft(states.get(base), states.get(end), a))(knob)
                points.append(Point(method, knob, label, [base, end], make))
            elif method == "ckpt-interp":
                make = (lambda a: lambda: interpolate(states.get(peak), states.get(end), a))(knob)
                points.append(Point(method, knob, label, [peak, end], make))
            elif method == "soup":
                members = soup_members(cfg.sft_run, peak, int(knob))
                make = (lambda ms: lambda: soup([states.get(m) for m in ms]))(members)
                points.append(Point(method, int(knob), f"soup {len(members)} ckpts", members, make))
            elif method in ("dg-threshold", "keep-top-r"):
                def fn_of(m=method, k=knob):
                    if m == "dg-threshold":
                        return lambda b, e: dg_threshold(b, e, k)
                    return lambda b, e: keep_top_r(b, e, restore_count(k, min(e.shape)))
                make = (lambda fn: lambda: matrix_state(states.get(base), states.get(end), names, fn))(fn_of())
                points.append(Point(method, knob, label, [base, end], make))
            elif method == "restore":
                make = (lambda k: lambda: _restore_state(states.get(end), factors(base), k, None, cfg.restore_mode))(knob)
                points.append(Point(method, knob, f"restore k={_knob_text(knob)}", [base, end], make))
        if method == "restore" and cfg.study:
            points += study_restore_points(cfg, states, factors)
        if method == "rl":
            for start, ckpt in rl_runs(cfg.study or ""):
                make = (lambda c: lambda: dict(states.get(c)))(ckpt)
                points.append(Point("rl", start, f"rl from {start}", [ckpt], make,
                                    {"train_seconds": train_seconds(Path(ckpt).parent)}))
    return points


def _restore_state(end_state: dict, factors: list, k, layers: set[int] | None, mode: str) -> dict:
    """The SFT end with the top ``k`` directions of the selected matrices (of ``layers``; None: all)
    restored towards the factors' reference."""
    from spindoctor.restore.sweep import point_edits

    out = dict(end_state)
    out.update(point_edits(factors, layers, k, 0, mode))
    return out


def best_sweep_rows(study: str, end: str) -> list[tuple[str, dict, dict]]:
    """``(kind, sweep config, best row)`` of the study's layers and ranks sweeps of this SFT end:
    the point with the highest OOD accuracy (ties: ID accuracy). Sweeps of another model are skipped."""
    import json

    out = []
    for kind in ("layers", "ranks"):
        path = Path(study) / "restore" / kind / "sweep.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            cfg, rows = record["config"], [r for r in record["rows"] if r.get("kind") == kind]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not rows or Path(cfg.get("tuned", "")).resolve() != Path(end).resolve():
            continue
        out.append((kind, cfg, max(rows, key=lambda r: (r.get("ood_acc") or 0, r.get("id_acc") or 0))))
    return out


def study_restore_points(cfg: ArenaConfig, states: States, factors: Callable) -> list[Point]:
    """The best layer-block and rank points of the study's restoration sweeps, rerun on the arena's hands."""
    from spindoctor.restore.select import parse_layers

    points = []
    for kind, sweep, row in best_sweep_rows(cfg.study or "", cfg.end):
        ref = sweep["ref"]
        name = {str(Path(cfg.base).resolve()): "base", str(Path(cfg.peak or cfg.base).resolve()): "peak"}.get(
            str(Path(ref).resolve()), ref)
        layers = None
        if kind == "layers":
            spec = str(row.get("layers") or row["point"]).removeprefix("layers ").strip()
            layers = set(parse_layers(spec, 10**6))
        make = (lambda r, k, ls, m: lambda: _restore_state(states.get(cfg.end), factors(r), k, ls, m))(
            ref, row["k_top"], layers, row.get("mode") or "direction")
        points.append(Point("restore", f"{kind}: {row['point']}", f"restore {row['point']} (ref {name})",
                            [ref, cfg.end], make))
    return points
