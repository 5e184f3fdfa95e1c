"""Run a restoration sweep end to end: config, baselines, points, table, figure.

Outputs in ``out``, written as one set (a unique temporary folder that replaces ``out``
whole, :func:`spindoctor.io.atomic_dir`; a non-empty ``out`` that is not a previous
sweep's is refused before any work): ``sweep.json`` (resolved config,
baselines and one row per point), ``sweep.csv`` (the rows), ``sweep.png``.
Each row holds ID and OOD accuracy +- SE, the loss proxies, how many matrices
the point edited, and the share of lost accuracy it recovers,
``(acc_point - acc_tuned) / (acc_ref - acc_tuned)`` (None when nothing was lost).
Every model is probed on the same hands, so each point also carries paired
evidence (docs/design.md, "Evidence"): per split, the change against the tuned
model and against the reference (accuracy and loss proxy, 95% paired-bootstrap
intervals, exact McNemar p) and the recovered share of accuracy and of loss
with its interval; ``per_hand`` keeps each probe's per-hand record.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spindoctor.errors import UserError
from spindoctor.io import atomic_dir, foreign_entries, rows_to_csv
from spindoctor.probes import ProbeConfig
from spindoctor.restore.plan import RestorePlan, plan_matrices
from spindoctor.restore.select import block_label, equal_blocks
from spindoctor.restore.sweep import load_factors, patched, point_edits, recovered_share

SweepKind = Literal["layers", "ranks", "impose"]
OUTPUT_FILES = ("sweep.json", "sweep.csv", "sweep.png")  # every file a sweep writes; the only ones it deletes
CSV_FIELDS = ["point", "kind", "layers", "k_top", "k_tail", "mode", "n_matrices", "id_acc", "id_acc_se",
              "ood_acc", "ood_acc_se", "id_loss", "ood_loss", "id_recovered", "ood_recovered", "seconds"]
# paired columns per split: change vs the tuned model (estimate, lo, hi) of accuracy and loss,
# and the recovered share of accuracy and of loss with its interval
PAIRED_FIELDS = [f"{split}_{what}_{part}" for split in ("id", "ood")
                 for what in ("acc_vs_tuned", "loss_vs_tuned", "acc_recovered", "loss_recovered")
                 for part in ("est", "lo", "hi")]
CSV_FIELDS += PAIRED_FIELDS


class SweepConfig(BaseModel):
    """One sweep: every default lives here and the resolved config is saved with the results."""

    model_config = ConfigDict(extra="forbid")

    kind: SweepKind = Field(description="layers (Figure 5), ranks (Figure 6) or impose (Figure 7)")
    ref: str = Field(description="reference checkpoint (base, OOD-peak SFT, or SFT for impose)")
    tuned: str = Field(description="checkpoint to edit (SFT end, or RL for impose)")
    matrices: str = Field("linear", description="matrix preset: paper, attn, mlp, linear, all")
    regex: str | None = Field(None, description="keep only tensor names matching this regex")
    embeddings: bool = Field(False, description="also restore embeddings and lm_head in every point")
    blocks: int | None = Field(4, ge=1, description="layer blocks for layers/impose sweeps (the reference used 4)")
    block_size: int | None = Field(None, ge=1, description="layers per block instead of --blocks")
    ks: list[int | float] = Field(default_factory=lambda: [0.01, 0.05, 0.1, 0.2, 0.5, 1.0],
                                  description="k_top values of a ranks sweep (counts or fractions)")
    k_top: int | float = Field(1.0, description="k_top of layers/impose points")
    k_tail: int | float = Field(0, description="k_tail of every point")
    mode: Literal["direction", "full"] = Field("direction", description="keep tuned singular values or not")
    factor_dtype: Literal["float32", "float64"] = Field("float32", description="dtype of the factorisations")
    cache_dir: str | None = Field(None, description="factorisation cache (default: none)")
    device: str = Field("cpu", description="device for the factorisations and the probed models (auto: CUDA when present)")
    probe: ProbeConfig = Field(default_factory=ProbeConfig, description="the ID/OOD probes of every point")

    @field_validator("ks")
    @classmethod
    def _some_ks(cls, v: list[int | float]) -> list[int | float]:
        if not v:
            raise ValueError("ks must list at least one k")
        for k in v:
            cls._valid_k(k)
        return v

    @field_validator("k_top", "k_tail")
    @classmethod
    def _valid_k(cls, v: int | float) -> int | float:
        if v < 0 or (isinstance(v, float) and v > 1):
            raise ValueError(f"k must be a count >= 0 or a fraction in [0, 1], got {v!r}")
        return v


def check_out(out: Path, label: str = "out") -> None:
    """Refuse (UserError) an ``out`` a sweep may not replace: a file, or a non-empty folder that is not
    a previous sweep output (only the sweep's files, sweep.json among them). Nothing is written."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"{label} {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and (foreign_entries(out, OUTPUT_FILES) or not (out / "sweep.json").is_file()):
        raise UserError(f"{label} {out} exists and is not a sweep output folder (only {', '.join(OUTPUT_FILES)}); "
                        "choose a new or empty folder")


def sweep_points(cfg: SweepConfig, n_layers: int) -> list[tuple[str, set[int] | None, int | float]]:
    """(label, layers or None for all, k_top) for every point of the sweep."""
    if cfg.kind == "ranks":
        return [(f"k={k:g}" if isinstance(k, float) else f"k={k}", None, k) for k in cfg.ks]
    block_size, blocks = (cfg.block_size, None) if cfg.block_size else (None, min(cfg.blocks or 4, n_layers))
    per_block = [(f"layers {block_label(b)}", set(b), cfg.k_top) for b in equal_blocks(n_layers, block_size, blocks)]
    if cfg.kind == "impose":
        return [("all layers", None, cfg.k_top)] + per_block
    return per_block


def _row(label: str, results: dict, baseline: dict | None, **extra) -> dict:
    row = {"point": label, **extra, "per_hand": {}, "paired": {}}
    for split in ("id", "ood"):
        r = results.get(split)
        row[f"{split}_acc"] = None if r is None else r.acc
        row[f"{split}_acc_se"] = None if r is None else r.acc_se
        row[f"{split}_loss"] = None if r is None else r.loss
        if r is not None:
            row["per_hand"][split] = r.per_hand
        if baseline and r is not None and split in baseline["tuned"]:
            row[f"{split}_recovered"] = recovered_share(r.acc, baseline["tuned"][split].acc, baseline["ref"][split].acc)
            row["paired"][split] = paired_evidence(baseline["tuned"][split], r, baseline["ref"][split])
            row.update(_flat_paired(split, row["paired"][split]))
    return row


def paired_evidence(tuned, point, ref) -> dict:
    """Paired change of ``point`` against the tuned model and the reference, and its recovered
    shares (ProbeResults of one split on the same hands; docs/design.md, "Evidence")."""
    from spindoctor.probes.compare import compare_probes, recovered

    a, b, c = tuned.to_dict(), point.to_dict(), ref.to_dict()
    return {"vs_tuned": compare_probes(a, b), "vs_ref": compare_probes(c, b), "recovered": recovered(a, b, c)}


def _flat_paired(split: str, ev: dict) -> dict:
    """The CSV's paired columns of one split (:data:`PAIRED_FIELDS`)."""
    parts = {"acc_vs_tuned": ev["vs_tuned"]["acc"], "loss_vs_tuned": ev["vs_tuned"]["loss"],
             "acc_recovered": ev["recovered"]["acc"], "loss_recovered": ev["recovered"]["loss"]}
    out = {}
    for what, stat in parts.items():
        for part, key in (("est", "estimate"), ("lo", "lo"), ("hi", "hi")):
            out[f"{split}_{what}_{part}"] = None if stat is None else stat[key]
    return out


def _probe_once(path: str, probe: ProbeConfig, memo: dict | None, model=None, tok=None, device: str = "cpu") -> dict:
    """Probe results of checkpoint ``path``, reused from ``memo`` when the same probe ran before."""
    from spindoctor.models.load import load_causal_lm
    from spindoctor.probes import probe_model

    key = (str(Path(path).resolve()), probe.model_dump_json())
    if memo is not None and key in memo:
        return memo[key]
    if model is None:
        model, tok = load_causal_lm(path, device=device)
    results = probe_model(model, tok, probe)
    if memo is not None:
        memo[key] = results
    return results


def run_sweep(cfg: SweepConfig, out: str | Path, progress: bool = True, baselines: dict | None = None) -> dict:
    """Run ``cfg``; write sweep.json, sweep.csv and sweep.png into ``out``; return the record.

    ``baselines`` is an optional dict shared between sweeps of one study: the
    reference and tuned models' probe results are computed once per checkpoint
    and probe config.
    """
    from spindoctor.models.load import check_model_folder, load_causal_lm
    from spindoctor.probes import probe_model
    from spindoctor.restore.figures import plot_sweep
    from spindoctor.spectral.tensors import Checkpoint

    started, out = time.time(), Path(out)
    check_out(out)
    for path in (cfg.ref, cfg.tuned):  # both are probed: malformed folders fail before any work
        check_model_folder(path)
    if cfg.device != "cpu":
        from spindoctor.devices import resolve_device

        resolve_device(cfg.device)
    plan = RestorePlan(layers="all", matrices=cfg.matrices, regex=cfg.regex, embeddings=cfg.embeddings)
    infos = plan_matrices(Checkpoint(cfg.ref), Checkpoint(cfg.tuned), plan)
    n_layers = max((i.layer for i in infos if i.layer is not None), default=-1) + 1
    factors = load_factors(cfg.ref, cfg.tuned, infos, cfg.cache_dir, cfg.factor_dtype, cfg.device, progress)
    baseline = {"ref": _probe_once(cfg.ref, cfg.probe, baselines, device=cfg.device)}
    model, tok = load_causal_lm(cfg.tuned, device=cfg.device)
    baseline["tuned"] = _probe_once(cfg.tuned, cfg.probe, baselines, model, tok)
    rows = [_row("reference", baseline["ref"], None, kind="baseline"),
            _row("tuned", baseline["tuned"], None, kind="baseline")]
    points = sweep_points(cfg, n_layers)
    from rich.progress import track

    for label, layers, k_top in track(points, description=f"{cfg.kind} sweep", disable=not progress):
        t0 = time.perf_counter()
        edits = point_edits(factors, layers, k_top, cfg.k_tail, cfg.mode)
        if cfg.embeddings:  # embeddings have no layer index: add them to every point
            edits.update(point_edits([f for f in factors if f.info.layer is None], None, k_top, cfg.k_tail, cfg.mode))
        with patched(model, edits):
            results = probe_model(model, tok, cfg.probe)
        rows.append(_row(label, results, baseline, kind=cfg.kind, layers=label if layers else "all",
                         k_top=k_top, k_tail=cfg.k_tail, mode=cfg.mode, n_matrices=len(edits),
                         seconds=round(time.perf_counter() - t0, 3)))
    record = {"config": cfg.model_dump(), "n_layers": n_layers, "n_matrices": len(infos),
              "seconds": round(time.time() - started, 2), "rows": rows}
    try:  # the three files replace a previous sweep's as one set (docs/design.md, "Run folder")
        with atomic_dir(out, owned=OUTPUT_FILES) as tmp:
            (tmp / "sweep.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            (tmp / "sweep.csv").write_text(rows_to_csv(rows, CSV_FIELDS), encoding="utf-8")
            plot_sweep(rows, cfg.kind, tmp / "sweep.png")
    except FileExistsError as exc:  # out changed while we worked: nothing was replaced
        raise UserError(str(exc)) from None
    return record
