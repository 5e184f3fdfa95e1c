"""Files of a drift run: metrics.json, per_matrix.csv, spectra.safetensors and figures.

- ``metrics.json``: schema ``spindoctor.drift/1``; provenance, config, tolerances,
  summaries per layer and kind, one object per matrix (same fields as the CSV).
- ``per_matrix.csv``: one row per matrix; angles in radians, ``ds_*`` in units of
  the weights, ``ds_rel_*``, shares and ``rel_update`` dimensionless.
- ``spectra.safetensors``: per-index arrays, tensor ``<matrix name>/<array>``
  (``s_ref``, ``s_tuned``, ``angle_u``, ``angle_v``, ``best_u``, ``best_v``,
  ``pa_u_k0.5`` ...).
- figures (matplotlib, PNG): ``singular_values.png`` (before/after spectrum and
  histogram of ds, the paper's Figure 3), ``principal_angles.png`` (angles
  against index, Figure 4), ``heatmap_angle.png`` (layer x kind, mean top-k
  principal angle, U and V), ``heatmap_ds_rel.png`` (layer x kind, mean |ds/s|).

The files form one set: they are written into a fresh temporary folder beside
``out`` that then replaces ``out`` whole (:func:`write_outputs`). A previous
drift output is recognised by its metrics.json schema and by holding only the
files above; only those files are ever deleted, any other ``out`` is refused.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Protocol

from spindoctor.errors import UserError
from spindoctor.io import atomic_dir, rows_to_csv

SCHEMA = "spindoctor.drift/1"
DATA_FILES = ("metrics.json", "per_matrix.csv", "spectra.safetensors")
FIGURE_FILES = ("singular_values.png", "principal_angles.png", "heatmap_angle.png", "heatmap_ds_rel.png")
OUTPUT_FILES = DATA_FILES + FIGURE_FILES  # every file drift writes; the only ones it ever deletes


class Result(Protocol):
    """What the writers read from a :class:`spindoctor.spectral.run.DriftResult`."""

    rows: list[dict]
    spectra: dict[str, dict]

    def to_json(self) -> dict: ...


def _clean(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def is_drift_output(folder: Path) -> bool:
    """True when ``folder`` holds only drift's files and its metrics.json has schema ``spindoctor.drift/1``."""
    from spindoctor.io import foreign_entries

    if foreign_entries(folder, OUTPUT_FILES):
        return False
    try:
        doc = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and doc.get("schema") == SCHEMA


def check_out(out: Path, label: str = "out") -> None:
    """Refuse (UserError) an ``out`` that drift may not replace: a file, or a non-empty folder that is
    not a previous drift output (:func:`is_drift_output`). Nothing is written."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"{label} {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_drift_output(out):
        raise UserError(f"{label} {out} exists and is not a drift output folder (metrics.json with schema "
                        f"{SCHEMA} and only drift's files); choose a new or empty folder")


def write_outputs(result: Result, out: Path, figures: bool, figure_matrices: list[str]) -> list[Path]:
    """Write every output file of ``result`` as one set; return their final paths.

    The files are written into a fresh temporary folder beside ``out`` which then
    replaces ``out`` whole (:func:`spindoctor.io.atomic_dir`): a rerun without figures
    leaves no old figure behind, and a failure leaves ``out`` as it was. Only files
    drift writes are deleted from a previous ``out``; any other ``out`` is refused.
    """
    for pattern in figure_matrices:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise UserError(f"figure_matrices: {pattern!r} is not a valid regular expression ({exc})") from None
    check_out(out)
    try:
        with atomic_dir(out, owned=OUTPUT_FILES) as tmp:
            names = _write_data(result, tmp)
            if figures:
                names += [p.name for p in write_figures(result, tmp, figure_matrices)]
    except FileExistsError as exc:  # out changed while we wrote: nothing was replaced
        raise UserError(str(exc)) from None
    return [out / name for name in names]


def _write_data(result: Result, out: Path) -> list[str]:
    from safetensors.torch import save_file

    doc = result.to_json()
    doc["matrices"] = [{k: _clean(v) for k, v in row.items()} for row in doc["matrices"]]
    (out / "metrics.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (out / "per_matrix.csv").write_text(rows_to_csv(result.rows, list(result.rows[0])), encoding="utf-8")
    tensors = {f"{name}/{key}": t.contiguous() for name, spec in result.spectra.items() for key, t in spec.items()}
    save_file(tensors, str(out / "spectra.safetensors"))
    return list(DATA_FILES)


def chosen_matrices(result: Result, patterns: list[str], limit: int = 4) -> list[str]:
    """Matrices for the per-matrix figures: regex matches, else the middle layer's (up to ``limit``)."""
    names = [r["name"] for r in result.rows]
    if patterns:
        picked = [n for n in names if any(re.search(p, n) for p in patterns)]
        return picked[:limit] if picked else names[:1]
    layers = sorted({r["layer"] for r in result.rows if r["layer"] is not None})
    if not layers:
        return names[:limit]
    mid = layers[len(layers) // 2]
    return [r["name"] for r in result.rows if r["layer"] == mid][:limit]


def _save(fig, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    return path


def write_figures(result: Result, out: Path, patterns: list[str]) -> list[Path]:
    """The four figures described in the module docstring."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picked = chosen_matrices(result, patterns)
    paths = [_fig_singular_values(plt, result, picked[0], out), _fig_angles(plt, result, picked, out)]
    paths.append(_fig_heatmap(plt, result, out, "heatmap_angle.png"))
    paths.append(_fig_heatmap(plt, result, out, "heatmap_ds_rel.png"))
    plt.close("all")
    return paths


def _fig_singular_values(plt, result: Result, name: str, out: Path) -> Path:
    spec = result.spectra[name]
    s0, s1 = spec["s_ref"].numpy(), spec["s_tuned"].numpy()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(s0, label="reference", lw=1.5)
    ax1.plot(s1, label="tuned", lw=1.0, ls="--")
    ax1.set_yscale("log")
    ax1.set_xlabel("index i (descending)")
    ax1.set_ylabel("singular value s_i")
    ax1.set_title(f"singular values: {name}", fontsize=9)
    ax1.legend()
    ax2.hist(s1 - s0, bins=60, color="tab:purple")
    ax2.set_xlabel("ds = s_tuned - s_ref")
    ax2.set_ylabel("count")
    ax2.set_title("histogram of singular-value changes", fontsize=9)
    return _save(fig, out / "singular_values.png")


def _fig_angles(plt, result: Result, names: list[str], out: Path) -> Path:
    labels = sorted({k[len("pa_u_"):] for k in result.spectra[names[0]] if k.startswith("pa_u_")})
    top = labels[len(labels) // 2] if labels else None  # a middle k: full rank is trivially 0 on square sides
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for side, ax in zip(("u", "v"), axes, strict=True):
        for name in names:
            spec = result.spectra[name]
            short = name.replace(".weight", "")
            ax.plot(spec[f"angle_{side}"].numpy() * 180 / math.pi, lw=1.0, label=f"{short} per-index")
            if top and f"pa_{side}_{top}" in spec:
                ax.plot(spec[f"pa_{side}_{top}"].numpy() * 180 / math.pi, lw=1.0, ls=":",
                        label=f"{short} principal ({top})")
        ax.set_xlabel("index i (per-index: singular-value order; principal: ascending)")
        ax.set_title(f"{'left (U)' if side == 'u' else 'right (V)'} singular vectors", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("angle (degrees)")
    axes[1].legend(fontsize=6, loc="upper left")
    return _save(fig, out / "principal_angles.png")


def _grid(result: Result, key: str):
    import numpy as np

    rows = [r for r in result.rows if r["layer"] is not None] or result.rows
    layers = sorted({r["layer"] if r["layer"] is not None else -1 for r in rows})
    kinds = sorted({r["kind"] for r in rows})
    grid = np.full((len(layers), len(kinds)), np.nan)
    for r in rows:
        v = r.get(key)
        if v is not None:
            grid[layers.index(r["layer"] if r["layer"] is not None else -1), kinds.index(r["kind"])] = v
    return grid, layers, kinds


def _fig_heatmap(plt, result: Result, out: Path, fname: str) -> Path:
    import numpy as np

    if fname == "heatmap_angle.png":
        ks = [k for k in result.rows[0] if re.fullmatch(r"k.+_u_mean", k)]
        kkey = ks[0][: -len("_u_mean")] if ks else None
        panels = [(f"{kkey}_u_mean", f"mean top-{kkey[1:]} principal angle, U (deg)"),
                  (f"{kkey}_v_mean", f"mean top-{kkey[1:]} principal angle, V (deg)")]
        scale = 180 / math.pi
    else:
        panels = [("ds_rel_mean_abs", "mean |ds/s| per matrix")]
        scale = 1.0
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 6), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        grid, layers, kinds = _grid(result, key)
        im = ax.imshow(grid * scale, aspect="auto", cmap="viridis", origin="lower")
        ax.set_xticks(range(len(kinds)), kinds, rotation=45, ha="right", fontsize=8)
        step = max(1, len(layers) // 16)
        ax.set_yticks(range(0, len(layers), step), [str(x) for x in layers[::step]], fontsize=8)
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax)
        if np.isnan(grid).all():
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
    return _save(fig, out / fname)
