"""``spindoctor.spectral.drift(ref, tuned, ...)``: compare two checkpoints matrix by matrix.

Reads one pair of matrices at a time (peak memory stays near the largest few
matrices and their factors, not the model), factorises each side (cached, see
:mod:`spindoctor.spectral.svd`) and computes the metrics of
:mod:`spindoctor.spectral.metrics`. The result keeps one scalar row per matrix and
the per-index spectra needed by the figures.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spindoctor.errors import UserError, first_error
from spindoctor.spectral.outputs import SCHEMA, write_outputs
from spindoctor.spectral.tensors import PRESETS

__all__ = ["SCHEMA", "DriftConfig", "DriftResult", "default_cache_dir", "drift", "k_label", "parse_k"]


def default_cache_dir() -> Path:
    """``$SPINDOCTOR_CACHE/svd`` or ``~/.cache/spindoctor/svd``."""
    root = os.environ.get("SPINDOCTOR_CACHE") or Path.home() / ".cache" / "spindoctor"
    return Path(root) / "svd"


class DriftConfig(BaseModel):
    """Every option of a drift run (the only source of defaults; saved in metrics.json)."""

    model_config = ConfigDict(extra="forbid")

    matrices: str = Field("paper", description="Preset: " + ", ".join(PRESETS) + ".")
    regex: str | None = Field(None, description="Keep only tensor names matching this regex (re.search).")
    k: list[float | int] = Field(
        default_factory=lambda: [0.25, 0.5, 1.0],
        description="Top-k subspace sizes: floats in (0, 1] are fractions of each matrix's rank, ints are counts.",
    )
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N.")
    dtype: Literal["float32", "float64"] = Field("float32", description="Dtype of factors and metrics.")
    method: Literal["auto", "gram", "svd", "randomized"] = Field(
        "auto", description="Factorisation: auto = gram for float32, svd for float64; randomized needs rank."
    )
    rank: int | None = Field(None, ge=1, description="Top-k rank for method=randomized.")
    workers: int | None = Field(
        None, ge=1, description="Matrices worked on at once on CPU, sharing torch's thread budget "
        "(None: min(threads, 4); 1 on CUDA). Each holds one matrix pair and its factors in memory.",
    )
    cache_dir: Path | None = Field(default_factory=default_cache_dir, description="Factorisation cache; None disables it.")
    figures: bool = Field(True, description="Write the PNG figures.")
    figure_matrices: list[str] = Field(
        default_factory=list, description="Regexes of matrices for the per-matrix figures (default: middle layer)."
    )

    @field_validator("matrices")
    @classmethod
    def _check_preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"must be one of {', '.join(PRESETS)}, got {v!r}")
        return v

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {v!r}")
        return v

    @field_validator("regex")
    @classmethod
    def _check_regex(cls, v: str | None) -> str | None:
        _compile(v)
        return v

    @field_validator("figure_matrices")
    @classmethod
    def _check_patterns(cls, v: list[str]) -> list[str]:
        for pattern in v:
            _compile(pattern)
        return v

    @model_validator(mode="after")
    def _check_rank(self) -> DriftConfig:
        if self.method == "randomized" and not self.rank:
            raise ValueError("method 'randomized' needs rank >= 1")
        return self

    @field_validator("k")
    @classmethod
    def _check_k(cls, v: list[float | int]) -> list[float | int]:
        if not v:
            raise ValueError("k needs at least one value")
        for x in v:
            if (isinstance(x, float) and not 0 < x <= 1) or (isinstance(x, int) and x < 1):
                raise ValueError(f"k values are fractions in (0, 1] or counts >= 1, got {x}")
        return v


def _compile(pattern: str | None) -> None:
    """Raise ValueError (one line) when ``pattern`` is not a valid regular expression."""
    if pattern is None:
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a valid regular expression ({exc})") from None


def parse_k(text: str) -> list[float | int]:
    """``"0.25,0.5,1.0,64"`` -> ``[0.25, 0.5, 1.0, 64]`` (a dot means fraction)."""
    out: list[float | int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            out.append(float(part) if ("." in part or "e" in part.lower()) else int(part))
        except ValueError:
            raise UserError(f"k must be comma-separated fractions or counts, got {part!r}") from None
    return out


def k_label(spec: float | int) -> str:
    """Column label of a k spec: ``k0.25`` (fraction) or ``k64`` (count)."""
    return f"k{spec:g}" if isinstance(spec, float) else f"k{spec}"


@dataclass
class DriftResult:
    """What :func:`drift` returns.

    Attributes
    ----------
    rows : one dict of scalar metrics per matrix (the per_matrix.csv rows)
    spectra : per matrix name, 1-D tensors: ``s_ref``, ``s_tuned``, ``angle_u``,
        ``angle_v`` (per-index), ``best_u``, ``best_v`` and ``pa_u_<k>``, ``pa_v_<k>``
        (principal angles, radians)
    summary : means of the main metrics per layer and per matrix kind
    meta : provenance (paths, fingerprints, model type, config, timings, cache hits)
    """

    rows: list[dict]
    spectra: dict[str, dict] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The metrics.json document (versioned by ``schema``)."""
        return {"schema": SCHEMA, **self.meta, "summary": self.summary, "matrices": self.rows}

    def save(self, out: str | Path, figures: bool = True, figure_matrices: list[str] | None = None) -> list[Path]:
        """Write metrics.json, per_matrix.csv, spectra.safetensors and figures into ``out``; return the paths.

        ``out`` is replaced whole or not at all (see :func:`spindoctor.spectral.outputs.write_outputs`);
        an existing ``out`` that is not a previous drift output folder is refused (UserError).
        """
        return write_outputs(self, Path(out), figures=figures, figure_matrices=figure_matrices or [])


def matrix_metrics(info, W_ref, W_tuned, f_ref, f_tuned, ks: list[float | int], dtype: str) -> tuple[dict, dict]:
    """All metrics of one matrix pair: (scalar row, spectra dict of 1-D CPU tensors)."""
    import torch

    import spindoctor.spectral.metrics as D

    rtol = D.TIE_RTOL[dtype]
    m, n = W_ref.shape
    r = f_ref.rank
    M_u = f_ref.U.T @ f_tuned.U
    M_v = f_ref.Vh @ f_tuned.Vh.T
    full_u, full_v = r == m and f_tuned.rank == r, r == n and f_tuned.rank == r
    g_ref, g_t = D.tie_groups(f_ref.S, rtol), D.tie_groups(f_tuned.S, rtol)
    ang_u, ang_v = D.per_index_angles(M_u, g_ref, full_u), D.per_index_angles(M_v, g_ref, full_v)
    best_u, _ = D.best_match(M_u)
    best_v, _ = D.best_match(M_v)
    W_ref_d, W_t_d = W_ref.to(f_ref.U.device), W_tuned.to(f_ref.U.device)
    dW_norm, W_norm = float(torch.dist(W_t_d, W_ref_d)), float(torch.linalg.vector_norm(W_ref_d))
    if full_u or full_v:  # complete factors: the split follows from the overlaps (no extra matmul)
        diag_share, rot_share = D.energy_split_from_overlaps(M_u, M_v, f_ref.S, f_tuned.S, dW_norm**2)
    else:  # truncated (randomized) factors
        diag_share, rot_share = D.energy_split(f_ref.U, f_ref.Vh, W_t_d - W_ref_d)
    row = {
        "name": info.name, "layer": info.layer, "kind": info.kind, "component": info.component,
        "rows": m, "cols": n, "rank": r, "method": f_ref.method,
        "rel_update": dW_norm / W_norm if W_norm else (0.0 if dW_norm == 0 else math.inf),
        "diag_share": diag_share, "rot_share": rot_share,
        **D.singular_value_drift(f_ref.S, f_tuned.S, rtol),
        "angle_u_mean": float(ang_u.mean()), "angle_u_max": float(ang_u.max()),
        "angle_v_mean": float(ang_v.mean()), "angle_v_max": float(ang_v.max()),
        "best_u_mean": float(best_u.mean()), "best_v_mean": float(best_v.mean()),
        "svd_error": max((e for e in (f_ref.error, f_tuned.error) if e is not None), default=None),
    }
    spectra = {"s_ref": f_ref.S, "s_tuned": f_tuned.S, "angle_u": ang_u, "angle_v": ang_v,
               "best_u": best_u, "best_v": best_v}
    for spec in ks:
        lab = k_label(spec)
        k = D.snap_k(D.resolve_k(spec, r), g_ref, g_t)
        pa_u, pa_v = D.principal_angles(M_u, k, full_u), D.principal_angles(M_v, k, full_v)
        row[f"{lab}_k"] = k
        row[f"{lab}_u_mean"], row[f"{lab}_u_max"] = float(pa_u.mean()), float(pa_u.max())
        row[f"{lab}_v_mean"], row[f"{lab}_v_max"] = float(pa_v.mean()), float(pa_v.max())
        row[f"{lab}_u_proj"], row[f"{lab}_v_proj"] = D.projection_distance(pa_u), D.projection_distance(pa_v)
        spectra[f"pa_u_{lab}"], spectra[f"pa_v_{lab}"] = pa_u, pa_v
    spectra = {k: v.detach().to("cpu", copy=True).float() for k, v in spectra.items()}
    return row, spectra


def summarize(rows: list[dict], ks: list[float | int]) -> dict:
    """Means of the headline metrics per layer and per kind (NaNs skipped)."""
    keys = ["rel_update", "ds_rel_mean_abs", "angle_u_mean", "angle_v_mean", "rot_share"]
    keys += [f"{k_label(s)}_{side}_mean" for s in ks for side in ("u", "v")]

    def mean(vals):
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        return sum(vals) / len(vals) if vals else None

    out: dict = {"overall": {k: mean(r[k] for r in rows) for k in keys}, "by_layer": {}, "by_kind": {}}
    for group, attr in (("by_layer", "layer"), ("by_kind", "kind")):
        labels = sorted({str(r[attr]) for r in rows})
        for lab in labels:
            sel = [r for r in rows if str(r[attr]) == lab]
            out[group][lab] = {"n": len(sel), **{k: mean(r[k] for r in sel) for k in keys}}
    return out


# Peak memory of one matrix pair in drift, in copies of the matrix at the factor dtype: the two
# matrices, their float64 copies, the Gram matrix, both factorisations and LAPACK workspace.
# Measured 10.8x (float32) for a lone 2048x8192 pair: peak RSS above the loaded process, one worker.
PAIR_WORKING_SET = 11


def split_by_memory(infos: list, ckpt, workers: int, memory: int | None, itemsize: int = 4) -> tuple[list, list]:
    """(matrices that may run ``workers`` at a time, matrices to run one at a time).

    A matrix runs alongside others while ``workers * PAIR_WORKING_SET * itemsize * rows * cols``
    (bytes) stays within a quarter of ``memory`` (bytes; None = unknown, no limit).
    """
    if workers <= 1 or memory is None:
        return list(infos), []
    largest = memory // 4 // (workers * PAIR_WORKING_SET * itemsize)  # elements per matrix
    together, alone = [], []
    for info in infos:
        (together if math.prod(ckpt.matrix_shape(info.name)) <= largest else alone).append(info)
    return together, alone


def resolve_config(config: DriftConfig | None, overrides: dict) -> DriftConfig:
    """``config`` (or the defaults) updated by keyword ``overrides`` and validated; UserError if invalid.

    The message names the parameter (``bad drift option dtype: ...``).
    """
    base = config or DriftConfig()
    try:
        return DriftConfig.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        where, msg = first_error(exc)
        raise UserError(f"bad drift option {where or '(config)'}: {msg.removeprefix('Value error, ')}") from None


def check_inputs(cfg: DriftConfig) -> str:
    """Check what a run needs before any work: the device exists, the cache is a folder. Returns the device."""
    from spindoctor.devices import resolve_device

    device = resolve_device(cfg.device)
    if device.startswith("cuda:"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(device.split(":", 1)[1]) >= count:
            raise UserError(f"device {device!r} is not available ({count} CUDA device(s))")
    if cfg.cache_dir is not None and cfg.cache_dir.exists() and not cfg.cache_dir.is_dir():
        raise UserError(f"cache_dir {cfg.cache_dir} exists and is not a folder")
    return device


def drift(
    ref: str | Path,
    tuned: str | Path,
    config: DriftConfig | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    **overrides,
) -> DriftResult:
    """Spectral drift of every selected matrix between two checkpoints.

    Parameters
    ----------
    ref, tuned : checkpoint folders (or .safetensors files) with the same architecture
    config : :class:`DriftConfig`; keyword ``overrides`` update it (``matrices="attn"`` ...)
    progress : called as ``progress(done, total, name)`` after each matrix

    Raises
    ------
    UserError
        Bad option or device, malformed or mismatched checkpoints, missing tensor, NaN/Inf.
    """
    import time

    import torch

    from spindoctor.devices import cpu_workers
    from spindoctor.spectral.svd import FactorCache, load_factorization
    from spindoctor.spectral.tensors import Checkpoint, paired_matrices

    cfg = resolve_config(config, overrides)
    device = check_inputs(cfg)
    t0 = time.perf_counter()
    a, b = Checkpoint(ref), Checkpoint(tuned)
    infos = paired_matrices(a, b, cfg.matrices, cfg.regex)
    cache = FactorCache(cfg.cache_dir) if cfg.cache_dir else None
    fp_a = a.fingerprint(cache.root if cache else None)
    fp_b = b.fingerprint(cache.root if cache else None)
    workers, threads = cpu_workers(cfg.workers, device)

    def pair(info):
        W_a, W_b = a.matrix(info.name, check_finite=False), b.matrix(info.name, check_finite=False)
        fa, ha = load_factorization(a, info.name, cache, cfg.dtype, cfg.method, device, cfg.rank, fp_a, W_a)
        fb, hb = load_factorization(b, info.name, cache, cfg.dtype, cfg.method, device, cfg.rank, fp_b, W_b)
        return *matrix_metrics(info, W_a, W_b, fa, fb, cfg.k, cfg.dtype), ha + hb

    with torch.no_grad():
        done, n_alone = _run_pairs(pair, infos, a, workers, threads, 8 if cfg.dtype == "float64" else 4, progress)
    rows = [done[info.name][0] for info in infos]
    spectra = {info.name: done[info.name][1] for info in infos}
    hits = sum(done[info.name][2] for info in infos)
    meta = {
        "ref": {"path": str(a.path), "fingerprint": fp_a, "model_type": a.model_type},
        "tuned": {"path": str(b.path), "fingerprint": fp_b, "model_type": b.model_type},
        "config": cfg.model_dump(mode="json"),
        "device": device,
        "workers": {"count": workers, "torch_threads_each": threads, "one_at_a_time": n_alone},
        "tolerances": _tolerances(cfg.dtype),
        "cache": _cache_meta(cache, hits, 2 * len(rows)),
        "seconds": round(time.perf_counter() - t0, 3),
        "n_matrices": len(rows),
    }
    return DriftResult(rows=rows, spectra=spectra, summary=summarize(rows, cfg.k), meta=meta)


def _cache_meta(cache, hits: int, factorizations: int) -> dict:
    """The ``cache`` block of metrics.json; ``rejected``: entries that failed verification and were recomputed."""
    return {"dir": str(cache.root) if cache else None, "hits": hits, "factorizations": factorizations,
            "rejected": cache.rejected if cache else 0}


def _run_pairs(pair, infos: list, ckpt, workers: int, threads: int, itemsize: int, progress) -> tuple[dict, int]:
    """``{name: pair(info)}`` for every matrix, ``workers`` at a time; matrices too big to hold that
    many pairs of in memory (:func:`split_by_memory`) run afterwards, one at a time with every thread.
    Returns the results and how many ran alone."""
    from spindoctor.devices import map_in_workers, memory_bytes

    together, alone = split_by_memory(infos, ckpt, workers, memory_bytes(), itemsize)
    done: dict[str, tuple] = {}
    for batch, n_workers, n_threads in ((together, workers, threads), (alone, 1, workers * threads)):
        for info, result in zip(batch, map_in_workers(pair, batch, n_workers, n_threads), strict=True):
            done[info.name] = result
            if progress:
                progress(len(done), len(infos), info.name)
    return done, len(alone)


def _tolerances(dtype: str) -> dict:
    from spindoctor.spectral.metrics import TIE_RTOL

    # Measured by tests/spectral (self-comparison and Givens rotations against float64 references)
    # and bench/drift.py (float32 gram vs float64 svd on SmolLM2-135M: largest difference 1.0e-3 rad,
    # a top-k principal angle of an unchanged 192-dim V subspace: sin^2 from I - M^T M is good to ~1e-6).
    return {"tie_rtol": TIE_RTOL[dtype], "angle_abs_rad": 2e-3 if dtype == "float32" else 1e-6,
            "angle_note": "principal angles, and per-index angles of well-separated singular values; "
                          "in float32, angles near 0 read up to about 1e-3 rad (sin^2 is good to ~1e-6; "
                          "use dtype float64 to resolve smaller ones); "
                          "per-index angles of nearly tied values move by about eps*s_max/gap "
                          "(2.8e-3 rad between CUDA and CPU on random SmolLM2-sized weights)"}
