"""Null models for the spectral claim (paper finding 3) in float64.

"Singular values barely move while singular vectors rotate" only means something
against what *any* update of the same size does: a random ``n x n`` update puts
about ``1/n`` of its energy on the diagonal of the reference basis, so a
rotational share near 99% is the default, not a finding (docs/design.md,
"Evidence: the spectral null"). For one matrix ``W_ref`` and its update
``dW = W_tuned - W_ref`` this module computes the headline drift metrics of

* the observed update,
* a Gaussian null: ``G`` with i.i.d. normal entries scaled to ``||dW||_F``,
* a spectrum null: ``P diag(sigma(dW)) Q^T`` with Haar-random orthonormal
  ``P, Q``: dW's own singular values, random singular vectors,

each null averaged over ``draws`` seeded draws. The rule: per matrix, the
log-ratio ``log(observed / null)`` of each metric; a layer or kind departs from
the null when the interval of its mean log-ratio over matrices excludes 0.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

METRICS = ("ds_rel_mean_abs", "angle_topk_deg", "rot_share")
NULLS = ("gaussian", "spectrum")


def haar_orthonormal(m: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``(m, k)`` float64 matrix with orthonormal columns, Haar-distributed.

    QR of a Gaussian matrix with the signs of R's diagonal moved into Q
    (Mezzadri 2007, "How to generate random matrices from the classical
    compact groups"), so the distribution is uniform, not biased by LAPACK's
    sign convention.
    """
    import torch

    if not 1 <= k <= m:
        raise ValueError(f"need 1 <= k <= m, got m={m}, k={k}")
    Z = torch.randn(m, k, dtype=torch.float64, generator=generator)
    Q, R = torch.linalg.qr(Z)
    signs = torch.sign(torch.diagonal(R))
    signs[signs == 0] = 1
    return Q * signs


def gaussian_update(shape: tuple[int, int], fro_norm: float, generator: torch.Generator) -> torch.Tensor:
    """``(m, n)`` float64 matrix of i.i.d. normal entries scaled to Frobenius norm ``fro_norm``."""
    import torch

    G = torch.randn(*shape, dtype=torch.float64, generator=generator)
    norm = float(torch.linalg.vector_norm(G))
    return G * (fro_norm / norm) if norm else G


def spectrum_update(dW: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``P diag(sigma) Q^T`` with ``sigma`` = singular values of ``dW`` (m, n) and Haar ``P``, ``Q``."""
    import torch

    sigma = torch.linalg.svdvals(dW.double())
    m, n = dW.shape
    r = sigma.numel()
    P, Q = haar_orthonormal(m, r, generator), haar_orthonormal(n, r, generator)
    return (P * sigma) @ Q.T


def drift_summary(W_ref: torch.Tensor, dW: torch.Tensor, k_frac: float = 0.25) -> dict[str, float]:
    """Headline drift of ``W_ref -> W_ref + dW`` in float64.

    Parameters
    ----------
    W_ref : (m, n) reference weight
    dW : (m, n) update (units of W)
    k_frac : top-k subspace as a fraction of the rank (the paper's head)

    Returns
    -------
    dict with ``ds_rel_mean_abs`` (mean |ds/s|, dimensionless),
    ``angle_topk_deg`` (mean principal angle of the top-k U and V subspaces,
    averaged over both sides, degrees) and ``rot_share`` (share of ``||dW||^2``
    off the diagonal of the reference basis, 0..1).
    """
    import torch

    from spindoctor.spectral import metrics as D

    if W_ref.shape != dW.shape or W_ref.ndim != 2:
        raise ValueError(f"W_ref and dW must be matrices of one shape, got {tuple(W_ref.shape)} and {tuple(dW.shape)}")
    W_ref = W_ref.double()
    W_t = W_ref + dW.double()
    U, S, Vh = torch.linalg.svd(W_ref, full_matrices=False)
    U2, S2, Vh2 = torch.linalg.svd(W_t, full_matrices=False)
    m, n = W_ref.shape
    r = S.numel()
    rtol = D.TIE_RTOL["float64"]
    k = D.snap_k(D.resolve_k(float(k_frac), r), D.tie_groups(S, rtol), D.tie_groups(S2, rtol))
    pa_u = D.principal_angles(U.T @ U2, k, r == m)
    pa_v = D.principal_angles(Vh @ Vh2.T, k, r == n)
    _, rot = D.energy_split(U, Vh, dW.double())
    return {
        "ds_rel_mean_abs": D.singular_value_drift(S, S2, rtol)["ds_rel_mean_abs"],
        "angle_topk_deg": math.degrees(0.5 * (float(pa_u.mean()) + float(pa_v.mean()))),
        "rot_share": rot,
    }


def null_comparison(
    W_ref: torch.Tensor, W_tuned: torch.Tensor, *, draws: int = 3, seed: int = 0, k_frac: float = 0.25
) -> dict[str, dict[str, float]]:
    """Observed drift beside both nulls for one matrix (means over ``draws`` seeded draws).

    Returns
    -------
    ``{"observed": {...}, "gaussian": {...}, "spectrum": {...}}``, each with the
    keys of :func:`drift_summary`; the nulls also carry ``<metric>_sd`` (spread
    over draws, 0 for one draw).
    """
    import torch

    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    dW = W_tuned.double() - W_ref.double()
    out = {"observed": drift_summary(W_ref, dW, k_frac)}
    fro = float(torch.linalg.vector_norm(dW))
    gen = torch.Generator().manual_seed(int(seed))
    for name in NULLS:
        rows = []
        for _ in range(draws):
            null_dW = gaussian_update(tuple(dW.shape), fro, gen) if name == "gaussian" else spectrum_update(dW, gen)
            rows.append(drift_summary(W_ref, null_dW, k_frac))
        out[name] = _mean_sd(rows)
    return out


def _mean_sd(rows: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in rows[0]:
        vals = [row[key] for row in rows]
        mean = sum(vals) / len(vals)
        out[key] = mean
        out[f"{key}_sd"] = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return out


def log_ratio(observed: float, null: float) -> float | None:
    """``log(observed / null)``; None where either is not a positive finite number."""
    if not (observed > 0 and null > 0 and math.isfinite(observed) and math.isfinite(null)):
        return None
    return math.log(observed / null)


def null_rows(ref, tuned, *, matrices: str = "paper", regex: str | None = None, draws: int = 3, seed: int = 0,
              k_frac: float = 0.25, progress=None) -> list[dict]:
    """:func:`null_comparison` for every selected matrix of two checkpoints.

    Parameters
    ----------
    ref, tuned : str or Path
        HF checkpoint folders of one architecture (read with
        :class:`spindoctor.spectral.tensors.Checkpoint`, safetensors only).
    matrices, regex : which weights (the drift presets).
    draws, seed : null draws per matrix; matrix ``i`` uses seed ``seed + i``.
    progress : optional ``progress(done, total)``.

    Returns
    -------
    list of dict
        One row per matrix: name, layer, kind, shape, and for each metric of
        :data:`METRICS` the observed value, both nulls and the log-ratios
        ``log_<null>_<metric> = log(observed / null)``.
    """
    from spindoctor.spectral.tensors import Checkpoint, paired_matrices

    ref_ck, tuned_ck = Checkpoint(ref), Checkpoint(tuned)
    infos = paired_matrices(ref_ck, tuned_ck, matrices, regex)
    rows = []
    for i, info in enumerate(infos):
        W_ref, W_t = ref_ck.matrix(info.name).double(), tuned_ck.matrix(info.name).double()
        res = null_comparison(W_ref, W_t, draws=draws, seed=seed + i, k_frac=k_frac)
        row = {"name": info.name, "layer": info.layer, "kind": info.kind, "shape": list(W_ref.shape)}
        for metric in METRICS:
            row[metric] = res["observed"][metric]
            for null in NULLS:
                row[f"{null}_{metric}"] = res[null][metric]
                row[f"log_{null}_{metric}"] = log_ratio(res["observed"][metric], res[null][metric])
        rows.append(row)
        if progress:
            progress(i + 1, len(infos))
    return rows


def summarize_null(rows: list[dict], *, seed: int = 0) -> dict:
    """Mean log-ratio of observed to null drift, overall and per layer and kind, with 95% intervals.

    The interval is a percentile bootstrap over matrices (the matrices are the
    units; seeded). ``exp(mean)`` reads as "observed is this many times the
    null". The rule (docs/design.md, "Evidence: the spectral null"): a group
    departs from a null in a metric when the interval excludes 0.

    Returns
    -------
    dict
        ``{"overall": {...}, "by_kind": {kind: {...}}, "by_layer": {layer: {...}}}``,
        each ``{f"{null}_{metric}": {"mean", "lo", "hi", "ratio", "n"}}``.
    """
    import numpy as np

    def group(sel: list[dict]) -> dict:
        out = {}
        for null in NULLS:
            for metric in METRICS:
                vals = np.array([r[f"log_{null}_{metric}"] for r in sel if r[f"log_{null}_{metric}"] is not None])
                if vals.size == 0:
                    out[f"{null}_{metric}"] = None
                    continue
                boot = vals[np.random.default_rng(seed).integers(0, vals.size, (2000, vals.size))].mean(axis=1)
                lo, hi = np.percentile(boot, [2.5, 97.5]) if vals.size > 1 else (vals[0], vals[0])
                out[f"{null}_{metric}"] = {"mean": float(vals.mean()), "lo": float(lo), "hi": float(hi),
                                           "ratio": float(np.exp(vals.mean())), "n": int(vals.size)}
        return out

    return {
        "overall": group(rows),
        "by_kind": {k: group([r for r in rows if r["kind"] == k]) for k in sorted({r["kind"] for r in rows})},
        "by_layer": {str(k): group([r for r in rows if r["layer"] == k])
                     for k in sorted({r["layer"] for r in rows if r["layer"] is not None})},
    }
