"""Drift metrics between two factorisations of the same matrix (pure functions).

Definitions: docs/design.md, "Spectral drift", after the analyses of Jin et al.
(arXiv:2508.16546) (W = U S V^T, thin SVD):

- singular-value drift ``ds = s_tuned - s_ref`` and ``ds / s_ref``;
- principal angles between top-k singular subspaces, ``theta =
  arccos(svdvals(U_ref[:, :k]^T U_tuned[:, :k]))`` (same for V);
- per-index angles ``arccos |<u_ref_i, u_tuned_i>|`` and the best match
  ``arccos max_j |<u_ref_i, u_tuned_j>|``;
- the energy split of ``dW = W_tuned - W_ref`` in the reference basis: diagonal
  share ``||diag(U_ref^T dW V_ref)||^2 / ||dW||_F^2``, rotational share = the rest;
- ``||dW||_F / ||W_ref||_F``.

Numerics (SciPy habits, ``scipy.linalg.subspace_angles``): angles are computed
from sines where they are small. With the overlap ``M = A^T B`` of two
orthonormal bases, the sines of the angles between ``span(A[:, I])`` and
``span(B[:, I])`` are the square roots of the eigenvalues of
``M[~I, I]^T M[~I, I]`` when ``A`` is a complete basis of its space (square side
of the matrix; no cancellation, so identical inputs give ~eps), and of
``I - M[I, I]^T M[I, I]`` otherwise. Ties: singular values within
``tie_rtol * s_max`` of each other form a group whose vectors are only defined as
a subspace, so per-index angles inside a group are the principal angles between
the group subspaces, and top-k cuts are moved to the end of a group
(:func:`snap_k`); sign flips and permutations within ties therefore read as 0.
Angles are in radians.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Relative tie tolerance per factor dtype: below it two singular values are "equal".
TIE_RTOL = {"float32": 1e-5, "float64": 1e-10}


def resolve_k(spec: float | int, r: int) -> int:
    """A k given as a fraction (float in (0, 1]) or a count (int >= 1) -> count in 1..r."""
    if isinstance(spec, float):
        if not 0 < spec <= 1:
            raise ValueError(f"fraction k must be in (0, 1], got {spec}")
        return max(1, min(r, math.ceil(spec * r - 1e-9)))
    if spec < 1:
        raise ValueError(f"count k must be >= 1, got {spec}")
    return min(int(spec), r)


def tie_groups(s: torch.Tensor, rtol: float) -> torch.Tensor:
    """Group id per index; consecutive singular values closer than ``rtol * s[0]`` share one.

    Parameters
    ----------
    s : (r,) descending singular values

    Returns
    -------
    (r,) int64 group ids, non-decreasing, starting at 0.
    """
    import torch

    if s.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=s.device)
    tol = rtol * float(s[0].abs())
    breaks = (s[:-1] - s[1:]).abs() > tol
    return torch.cat([torch.zeros(1, dtype=torch.int64, device=s.device), breaks.to(torch.int64).cumsum(0)])


def snap_k(k: int, *groups: torch.Tensor) -> int:
    """Smallest ``k' >= k`` that cuts no tie group of any of ``groups`` (each (r,))."""
    r = int(groups[0].numel())
    while k < r and any(int(g[k - 1]) == int(g[k]) for g in groups):
        k += 1
    return k


def _sines_sq(M: torch.Tensor, start: int, stop: int, complete: bool) -> torch.Tensor:
    """Squared sines of principal angles between span(A[:, start:stop]) and span(B[:, start:stop]),
    ascending (index ranges are contiguous: top-k cuts and tie groups; slices are views, no copies)."""
    import torch

    if complete:  # N = M[outside the range, range]: the rows above and below the block
        above, below = M[:start, start:stop], M[stop:, start:stop]
        S = below.T @ below
        if start:
            S = S + above.T @ above
    else:
        Mk = M[start:stop, start:stop]
        S = torch.eye(stop - start, dtype=M.dtype, device=M.device) - Mk.T @ Mk
    return torch.linalg.eigvalsh(S).clamp(0, 1)


def principal_angles(M: torch.Tensor, k: int, complete: bool) -> torch.Tensor:
    """Principal angles between the top-k subspaces of two orthonormal bases.

    Parameters
    ----------
    M : (r, r) overlap ``A^T B`` of the bases (A = reference, B = tuned)
    k : subspace dimension, 1..r
    complete : A spans its whole ambient space (r equals the ambient dimension)

    Returns
    -------
    (k,) angles in radians, ascending.
    """
    import torch

    if not 1 <= k <= M.shape[0]:
        raise ValueError(f"k must be in 1..{M.shape[0]}, got {k}")
    if complete and k == M.shape[0]:  # both span the whole space
        return torch.zeros(k, dtype=M.dtype, device=M.device)
    return torch.arcsin(_sines_sq(M, 0, k, complete).sqrt())


def per_index_angles(M: torch.Tensor, groups: torch.Tensor, complete: bool) -> torch.Tensor:
    """Angle between ``a_i`` and ``b_i`` for each i; within a tie group, the group's principal angles.

    Parameters
    ----------
    M : (r, r) overlap ``A^T B``
    groups : (r,) tie-group ids of the reference (:func:`tie_groups`)
    complete : see :func:`principal_angles`

    Returns
    -------
    (r,) angles in radians; ``arccos |<a_i, b_i>|`` for untied indices, computed as
    ``atan2(sin, |cos|)`` so small and large angles are both accurate.
    """
    import torch

    cos = M.diagonal().abs()
    if complete:
        off = M.clone()
        off.fill_diagonal_(0)
        sin_sq = (off * off).sum(0)
    else:
        sin_sq = (1 - cos * cos).clamp_min(0)
    theta = torch.atan2(sin_sq.sqrt(), cos)
    ids, counts = torch.unique_consecutive(groups, return_counts=True)
    start = 0
    for c in counts.tolist():
        if c > 1:
            theta[start:start + c] = torch.arcsin(_sines_sq(M, start, start + c, complete).sqrt())
        start += c
    return theta


def best_match(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each reference vector the closest tuned one: ``arccos max_j |M_ij|`` and argmax j.

    Returns
    -------
    (angles (r,) radians, index (r,) int64)
    """
    import torch

    val, j = M.abs().max(dim=1)
    return torch.arccos(val.clamp(0, 1)), j


def projection_distance(theta: torch.Tensor) -> float:
    """``||U U^T - U' U'^T||_F / sqrt(2) = ||sin theta||_2`` (dimensionless, 0..sqrt(k))."""
    return float(theta.sin().square().sum().sqrt())


def singular_value_drift(s_ref: torch.Tensor, s_tuned: torch.Tensor, rtol: float) -> dict[str, float]:
    """Summaries of ``ds = s_tuned - s_ref`` (units of W) and ``ds / s_ref`` (dimensionless).

    Indices with ``s_ref <= rtol * s_ref[0]`` are left out of the relative stats.
    """
    ds = (s_tuned - s_ref).double()
    keep = s_ref > rtol * float(s_ref[0]) if s_ref.numel() else s_ref > 0
    rel = ds[keep] / s_ref[keep].double()

    def stats(x, prefix):
        if x.numel() == 0:
            return {f"{prefix}_mean": math.nan, f"{prefix}_median": math.nan, f"{prefix}_max_abs": math.nan,
                    f"{prefix}_mean_abs": math.nan}
        return {f"{prefix}_mean": float(x.mean()), f"{prefix}_median": float(x.median()),
                f"{prefix}_max_abs": float(x.abs().max()), f"{prefix}_mean_abs": float(x.abs().mean())}

    return {**stats(ds, "ds"), **stats(rel, "ds_rel")}


def energy_split(U_ref: torch.Tensor, Vh_ref: torch.Tensor, dW: torch.Tensor) -> tuple[float, float]:
    """Share of ``||dW||_F^2`` on the reference singular pairs (diagonal) vs off them (rotational).

    Parameters
    ----------
    U_ref : (m, r), Vh_ref : (r, n) reference factors
    dW : (m, n) update ``W_tuned - W_ref``

    Returns
    -------
    (diagonal share, rotational share), each in [0, 1], summing to 1; (nan, nan) if dW == 0.
    """
    diag = (U_ref * (dW.to(U_ref.dtype) @ Vh_ref.T)).sum(0)
    return _shares(diag, float(dW.double().square().sum()))


def energy_split_from_overlaps(
    M_u: torch.Tensor, M_v: torch.Tensor, s_ref: torch.Tensor, s_tuned: torch.Tensor, dW_sq: float
) -> tuple[float, float]:
    """:func:`energy_split` from the overlaps, without touching dW (full-rank factors only).

    ``u_i^T dW v_i = u_i^T W_tuned v_i - s_i = sum_j M_u[i, j] s'_j M_v[i, j] - s_i``.
    In float32 the diagonal terms err by about ``1e-6 * s_max``, so the shares are
    meaningful when ``||dW||_F / ||W||_F`` is well above 1e-5.

    Parameters
    ----------
    M_u : (r, r) ``U_ref^T U_tuned``; M_v : (r, r) ``V_ref^T V_tuned``
    s_ref, s_tuned : (r,) singular values
    dW_sq : ``||dW||_F^2`` (units of W squared)
    """
    diag = (M_u * M_v * s_tuned).sum(1) - s_ref
    return _shares(diag, dW_sq)


def _shares(diag: torch.Tensor, total: float) -> tuple[float, float]:
    if total == 0:
        return math.nan, math.nan
    d = min(1.0, float(diag.double().square().sum()) / total)
    return d, 1.0 - d


def relative_update(W_ref: torch.Tensor, W_tuned: torch.Tensor) -> float:
    """``||W_tuned - W_ref||_F / ||W_ref||_F`` (dimensionless; inf if W_ref == 0 != W_tuned)."""
    num = float((W_tuned.double() - W_ref.double()).norm())
    den = float(W_ref.double().norm())
    return num / den if den else (0.0 if num == 0 else math.inf)
