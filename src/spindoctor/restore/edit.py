"""The directional-restoration edit of one weight matrix (a pure function).

Definition (docs/design.md, "Restoration edit"; Jin et al., arXiv:2508.16546),
with thin SVDs W_ref = U_r S_r V_r^T and W_tuned = U_t S_t V_t^T of rank n, and restored index set R = {0..k_top-1} U {n-k_tail..n-1}::

    U_new = [U_r[:, :k_top] | U_t[:, k_top:n-k_tail] | U_r[:, n-k_tail:]]   (V_new likewise)
    W'    = U_new diag(s) V_new^T

with s = S_t everywhere (mode ``direction``) or s = S_r on R and S_t elsewhere
(mode ``full``: the whole reference triplet on R). It is computed as a rank-|R|
update of the tuned matrix,

    W' = W_tuned - U_t[:, R] diag(S_t[R]) V_t[:, R]^T + U_r[:, R] diag(s[R]) V_r[:, R]^T,

which is the same matrix (W_tuned is the sum of all its rank-one terms) at
O(m n |R|) cost instead of O(m n r).

Edge cases:
* k_top = k_tail = 0 returns the tuned matrix itself (bitwise; no arithmetic).
* ``full`` with k_top + k_tail = n returns W_ref up to the factorisations'
  reconstruction error (about 1e-6 relative in float32, 1e-12 in float64).
* k_top + k_tail > n is clipped: k_tail is reduced to n - k_top.
* With a randomized top-r factorisation, n is r and the "tail" is the tail of
  the computed top-r subspace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from spindoctor.spectral.metrics import resolve_k

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from spindoctor.spectral.svd import Factorization

Mode = Literal["direction", "full"]
MODES: tuple[Mode, ...] = ("direction", "full")


def restore_count(k: int | float, rank: int) -> int:
    """A k given as a count (int >= 0, clipped to ``rank``) or a fraction of ``rank``
    (float in [0, 1], rounded up as the drift engine does) -> a count in 0..rank."""
    if k == 0:
        return 0
    return resolve_k(k, rank)


def restored_indices(rank: int, k_top: int, k_tail: int) -> torch.Tensor:
    """Indices taken from the reference: the top ``k_top`` and the last ``k_tail`` (clipped).

    Returns
    -------
    torch.Tensor, shape (k_top + min(k_tail, rank - k_top),), int64, ascending.
    """
    import torch

    if not (0 <= k_top <= rank and k_tail >= 0):
        raise ValueError(f"need 0 <= k_top <= rank and k_tail >= 0, got k_top={k_top}, k_tail={k_tail}, rank={rank}")
    k_tail = min(k_tail, rank - k_top)
    return torch.cat([torch.arange(0, k_top), torch.arange(rank - k_tail, rank)])


def restore_matrix(
    W_tuned: torch.Tensor,
    f_ref: Factorization,
    f_tuned: Factorization,
    k_top: int,
    k_tail: int = 0,
    mode: Mode = "direction",
) -> torch.Tensor:
    """Directionally restore one matrix (see the module docstring for the definition).

    Parameters
    ----------
    W_tuned : torch.Tensor, shape (m, n)
        The fine-tuned weight, ``(out, in)`` orientation.
    f_ref, f_tuned : Factorization
        Thin SVDs of the reference and of ``W_tuned``: U (m, r), S (r,), Vh (r, n).
    k_top, k_tail : int
        Counts of leading and trailing singular indices taken from the reference.
    mode : {"direction", "full"}
        Keep the tuned singular values (``direction``) or take the reference's on
        the restored indices (``full``).

    Returns
    -------
    torch.Tensor, shape (m, n), dtype of ``W_tuned``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if f_ref.U.shape != f_tuned.U.shape or f_ref.Vh.shape != f_tuned.Vh.shape:
        raise ValueError(f"factorisations differ in shape: U {tuple(f_ref.U.shape)} vs {tuple(f_tuned.U.shape)}")
    if tuple(W_tuned.shape) != (f_tuned.U.shape[0], f_tuned.Vh.shape[1]):
        raise ValueError(f"W_tuned has shape {tuple(W_tuned.shape)}, factors are for "
                         f"{(f_tuned.U.shape[0], f_tuned.Vh.shape[1])}")
    idx = restored_indices(f_tuned.rank, k_top, k_tail)
    if idx.numel() == 0:
        return W_tuned
    work = f_tuned.U.dtype
    s_new = f_tuned.S[idx] if mode == "direction" else f_ref.S[idx]
    removed = (f_tuned.U[:, idx] * f_tuned.S[idx]) @ f_tuned.Vh[idx]
    added = (f_ref.U[:, idx] * s_new) @ f_ref.Vh[idx]
    out = W_tuned.to(dtype=work, device=added.device) - removed + added
    return out.to(dtype=W_tuned.dtype, device=W_tuned.device)
