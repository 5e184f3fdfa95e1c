"""The rotation toy: why singular vectors can move while the function and spectrum stay put.

The appendix argument of the SFT-vs-RL spectral study (Jin et al.,
arXiv:2508.16546, appendix; docs/design.md, "Rotation toy"): for a product of matrices W = A B and any orthogonal R, (A R)(R^T B) = A B
exactly, the singular values of A R equal those of A, yet the right singular
vectors of A R are those of A rotated by R^T. Rotations between factors are
free moves for an optimiser: they change no output.

Two parts, both in float64 NumPy:

* :func:`gauge_identity`: the exact identity on random factors and a random
  rotation of a chosen angle.
* :func:`train_two_factor`: a two-factor linear model is pretrained by
  gradient descent on one linear task, then fine-tuned on a nearby task.
  We measure how much the product, the factors' singular values and the
  factors' singular vectors moved (per-index angles, as the drift engine
  reports them). Where neighbouring singular values are close, a small
  change of the matrix turns the singular vectors a lot (eigenvector
  sensitivity scales with 1/gap), which is the head-vs-tail pattern of the
  paper's Figure 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def random_rotation(n: int, angle: float, rng: np.random.Generator) -> np.ndarray:
    """An n x n orthogonal matrix rotating by ``angle`` radians in every one of n//2 random planes.

    Returns
    -------
    ndarray, shape (n, n), float64
        R = Q blockdiag(G(angle), ..., 1) Q^T with Q random orthogonal.
    """
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    g = np.eye(n)
    c, s = np.cos(angle), np.sin(angle)
    for i in range(0, n - 1, 2):
        g[i : i + 2, i : i + 2] = [[c, -s], [s, c]]
    return q @ g @ q.T


def per_index_angles_deg(u_ref: np.ndarray, u_new: np.ndarray) -> np.ndarray:
    """arccos |<u_ref_i, u_new_i>| in degrees for each column i (shapes (m, r) -> (r,)).

    Computed as 2 arcsin(||u_ref_i - sign(c_i) u_new_i|| / 2), which equals the
    arccos form for unit vectors but stays accurate for tiny angles, where
    arccos of a cosine near 1 loses half the digits.
    """
    sign = np.where(np.sum(u_ref * u_new, axis=0) < 0, -1.0, 1.0)
    chord = np.linalg.norm(u_ref - sign * u_new, axis=0)
    return np.degrees(2 * np.arcsin(np.clip(chord / 2, 0.0, 1.0)))


def gauge_identity(n: int = 32, angle_deg: float = 30.0, seed: int = 0) -> dict:
    """Check (A R)(R^T B) = A B and its consequences on random factors (float64).

    Returns
    -------
    dict
        ``product_rel_error`` (||(AR)(R^T B) - AB||_F / ||AB||_F, ~1e-15),
        ``sv_max_rel_change_A`` (max |s(AR) - s(A)| / s(A), ~1e-15),
        ``mean_angle_right_vectors_A_deg`` (mean per-index angle between the
        right singular vectors of A and of AR: large).
    """
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    r = random_rotation(n, np.radians(angle_deg), rng)
    w, w_rot = a @ b, (a @ r) @ (r.T @ b)
    _, s_a, vt_a = np.linalg.svd(a)
    _, s_ar, vt_ar = np.linalg.svd(a @ r)
    return {
        "n": n,
        "angle_deg": angle_deg,
        "product_rel_error": float(np.linalg.norm(w_rot - w) / np.linalg.norm(w)),
        "sv_max_rel_change_A": float(np.max(np.abs(s_ar - s_a) / s_a)),
        "mean_angle_right_vectors_A_deg": float(per_index_angles_deg(vt_a.T, vt_ar.T).mean()),
    }


@dataclass(frozen=True)
class ToyResult:
    """What fine-tuning the two-factor model moved (all float64)."""

    product_rel_change: float  # ||AB - A0B0||_F / ||A0B0||_F
    task_rel_change: float  # ||T' - T||_F / ||T||_F, the size of the task shift
    sv_rel_change_A: np.ndarray  # |s(A) - s(A0)| / s(A0), shape (h,)
    sv_rel_change_W: np.ndarray  # the same for the product W = AB, shape (d,)
    angles_A_deg: np.ndarray  # per-index angles of A's left singular vectors, shape (h,)
    s_A0: np.ndarray  # singular values of A before fine-tuning, shape (h,)
    s_A: np.ndarray  # and after, shape (h,)
    losses: np.ndarray  # fine-tuning loss per step

    def summary(self) -> dict:
        head = max(1, len(self.angles_A_deg) // 4)
        return {
            "task_rel_change": self.task_rel_change,
            "product_rel_change": self.product_rel_change,
            "sv_max_rel_change_A": float(self.sv_rel_change_A.max()),
            "sv_mean_rel_change_A": float(self.sv_rel_change_A.mean()),
            "sv_max_rel_change_W": float(self.sv_rel_change_W.max()),
            "angle_head_mean_deg": float(self.angles_A_deg[:head].mean()),
            "angle_tail_mean_deg": float(self.angles_A_deg[-head:].mean()),
            "angle_max_deg": float(self.angles_A_deg.max()),
            "final_loss": float(self.losses[-1]),
        }


def _gd(a, b, target, x, lr, steps):
    """Full-batch gradient descent on 0.5 ||A B X - T X||^2 / n; returns factors and losses."""
    n = x.shape[1]
    losses = np.empty(steps)
    for t in range(steps):
        resid = (a @ b - target) @ x  # (d, n)
        grad_w = resid @ x.T / n  # dL/dW, (d, d)
        losses[t] = 0.5 * np.sum(resid**2) / n
        a, b = a - lr * grad_w @ b.T, b - lr * a.T @ grad_w
    return a, b, losses


def train_two_factor(
    d: int = 24, shift: float = 0.05, steps: int = 1500, lr: float = 0.05, seed: int = 0
) -> ToyResult:
    """Pretrain W = A B on a task T, fine-tune on T' = T + shift * noise, and compare.

    Parameters
    ----------
    d : int
        Input, hidden and output width.
    shift : float
        Relative size of the task change (||T' - T||_F / ||T||_F ~ shift).
    steps : int
        Gradient-descent steps for each of pretraining and fine-tuning.
    lr : float
        Learning rate (full batch, mean squared error).
    """
    rng = np.random.default_rng(seed)
    spectrum = np.linspace(2.0, 0.5, d)  # a decaying spectrum with small gaps in the tail
    qu, _ = np.linalg.qr(rng.standard_normal((d, d)))
    qv, _ = np.linalg.qr(rng.standard_normal((d, d)))
    target = qu @ np.diag(spectrum) @ qv.T
    x = rng.standard_normal((d, 4 * d))
    a0, b0, _ = _gd(0.3 * rng.standard_normal((d, d)), 0.3 * rng.standard_normal((d, d)),
                    target, x, lr, steps)
    noise = rng.standard_normal((d, d))
    new_target = target + shift * np.linalg.norm(target) * noise / np.linalg.norm(noise)
    a, b, losses = _gd(a0, b0, new_target, x, lr, steps)
    u0, s0, _ = np.linalg.svd(a0)
    u1, s1, _ = np.linalg.svd(a)
    sw0, sw1 = np.linalg.svd(a0 @ b0, compute_uv=False), np.linalg.svd(a @ b, compute_uv=False)
    return ToyResult(
        product_rel_change=float(np.linalg.norm(a @ b - a0 @ b0) / np.linalg.norm(a0 @ b0)),
        task_rel_change=float(np.linalg.norm(new_target - target) / np.linalg.norm(target)),
        sv_rel_change_A=np.abs(s1 - s0) / s0,
        sv_rel_change_W=np.abs(sw1 - sw0) / sw0,
        angles_A_deg=per_index_angles_deg(u0, u1),
        s_A0=s0,
        s_A=s1,
        losses=losses,
    )
