"""The arena's weight-space methods: small pure functions on tensors (docs/design.md, "Arena").

Every function takes state dicts (``{name: tensor}``) or single matrices and
returns new float32 tensors; nothing is loaded, probed or written here.

* :func:`wise_ft`: ``(1 - a) theta_base + a theta_end`` (WiSE-FT, Wortsman et
  al., "Robust fine-tuning of zero-shot models", CVPR 2022).
* :func:`interpolate`: the same line between the OOD-peak checkpoint and the
  SFT end (early-checkpoint interpolation, Dang et al. 2025).
* :func:`soup`: the uniform average of checkpoints (a "model soup", Wortsman et
  al., ICML 2022), accumulated in float64.
* :func:`dg_threshold`: keep only the singular values of the update
  ``dW = W_end - W_base`` above the Donoho-Gavish optimal hard threshold for
  unknown noise (Gavish & Donoho, "The optimal hard threshold for singular
  values is 4/sqrt(3)", IEEE Trans. Inf. Theory 60(8), 2014), SVD in float64.
* :func:`keep_top_r`: keep the top ``r`` singular directions of ``dW``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

State = Mapping[str, "torch.Tensor"]


def check_states(states: Mapping[str, State]) -> None:
    """Raise ValueError unless every state dict holds the same tensor names and shapes.

    Parameters
    ----------
    states : mapping of str to state dict
        Named state dicts (the names appear in the message, e.g. ``base``, ``end``).

    Raises
    ------
    ValueError
        Naming the first tensor missing from one of them or of a different shape.
    """
    items = list(states.items())
    if not items:
        raise ValueError("states is empty: nothing to combine")
    first_name, first = items[0]
    for name, state in items[1:]:
        for key in sorted(set(first) ^ set(state)):
            where = name if key in first else first_name
            raise ValueError(f"tensor {key!r} is missing from {where}: the checkpoints differ in architecture")
        for key, t in first.items():
            if tuple(t.shape) != tuple(state[key].shape):
                raise ValueError(f"tensor {key!r} has shape {tuple(t.shape)} in {first_name} "
                                 f"and {tuple(state[key].shape)} in {name}")


def _lerp(start: State, stop: State, a: float, names: tuple[str, str]) -> dict:
    """``(1 - a) start + a stop`` per tensor in float32; ``a`` 0 or 1 returns a copy of an end bitwise."""
    import torch

    if not (isinstance(a, int | float) and math.isfinite(a)):
        raise ValueError(f"a must be a finite number, got {a!r}")
    check_states(dict(zip(names, (start, stop), strict=True)))
    if a == 0:
        return {k: v.to(torch.float32).clone() for k, v in start.items()}
    if a == 1:
        return {k: v.to(torch.float32).clone() for k, v in stop.items()}
    return {k: torch.lerp(v.to(torch.float32), stop[k].to(torch.float32), float(a)) for k, v in start.items()}


def wise_ft(base: State, end: State, a: float) -> dict:
    """WiSE-FT: ``theta = (1 - a) theta_base + a theta_end`` for every tensor.

    Parameters
    ----------
    base, end : state dict
        The pre-SFT model and the SFT end, same names and shapes.
    a : float
        Mixing weight of the end (0: the base bitwise, 1: the end bitwise;
        values outside [0, 1] extrapolate).

    Returns
    -------
    dict of str to torch.Tensor
        float32 tensors of the inputs' shapes.
    """
    return _lerp(base, end, a, ("base", "end"))


def interpolate(peak: State, end: State, a: float) -> dict:
    """Early-checkpoint interpolation: ``theta = (1 - a) theta_peak + a theta_end``.

    Parameters
    ----------
    peak, end : state dict
        The OOD-peak SFT checkpoint and the SFT end.
    a : float
        Weight of the end (0: the peak bitwise, 1: the end bitwise).

    Returns
    -------
    dict of str to torch.Tensor
        float32 tensors.
    """
    return _lerp(peak, end, a, ("peak", "end"))


def soup(states: list[State]) -> dict:
    """Uniform average of checkpoints, summed in float64 and returned in float32.

    Parameters
    ----------
    states : list of state dict
        One or more checkpoints with the same names and shapes; a soup of one is
        that checkpoint (bitwise for float32 inputs).

    Returns
    -------
    dict of str to torch.Tensor
        float32 tensors.
    """
    import torch

    if not states:
        raise ValueError("states is empty: a soup needs at least one checkpoint")
    check_states({f"checkpoint {i}": s for i, s in enumerate(states)})
    out = {}
    for key in states[0]:
        total = states[0][key].to(torch.float64).clone()
        for s in states[1:]:
            total += s[key].to(torch.float64)
        out[key] = (total / len(states)).to(torch.float32)
    return out


def dg_omega(beta: float) -> float:
    """Gavish-Donoho ``omega(beta) ~ 0.56 beta^3 - 0.95 beta^2 + 1.82 beta + 1.43`` (unknown noise).

    Parameters
    ----------
    beta : float
        Aspect ratio ``min(m, n) / max(m, n)`` in (0, 1].

    Returns
    -------
    float
        The multiplier of the median singular value (2.858 at ``beta = 1``).
    """
    if not 0 < beta <= 1:
        raise ValueError(f"beta must be in (0, 1], got {beta!r}")
    return 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43


def dg_rank(s, shape: tuple[int, int], scale: float = 1.0) -> int:
    """How many singular values ``s`` (descending) of an ``m x n`` matrix exceed ``scale * omega(beta) * median(s)``."""
    import numpy as np

    s = np.asarray(s, dtype=np.float64)
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    m, n = shape
    tau = scale * dg_omega(min(m, n) / max(m, n)) * float(np.median(s))
    return int((s > tau).sum())


def _update_svd(W_base, W_end):
    """``U, S, Vh`` (float64) of ``dW = W_end - W_base``; ValueError on a shape mismatch or a non-matrix."""
    import torch

    if W_base.ndim != 2 or tuple(W_base.shape) != tuple(W_end.shape):
        raise ValueError(f"W_base and W_end must be matrices of one shape, got {tuple(W_base.shape)} "
                         f"and {tuple(W_end.shape)}")
    dW = W_end.to(torch.float64) - W_base.to(torch.float64)
    return torch.linalg.svd(dW, full_matrices=False)


def _rebuild(W_base, U, S, Vh, r: int):
    import torch

    kept = (U[:, :r] * S[:r]) @ Vh[:r]
    return (W_base.to(torch.float64) + kept).to(torch.float32)


def dg_threshold(W_base, W_end, scale: float = 1.0):
    """``W_base`` plus the part of ``dW = W_end - W_base`` above the Donoho-Gavish threshold.

    Parameters
    ----------
    W_base, W_end : torch.Tensor, shape (m, n)
        The base and SFT-end weights of one matrix.
    scale : float
        Multiplier of the optimal threshold ``tau = omega(beta) * median(s)``
        (1: Gavish & Donoho 2014, noise level unknown).

    Returns
    -------
    torch.Tensor, shape (m, n), float32
        ``W_base + sum_{s_i > tau} s_i u_i v_i^T`` (SVD in float64).
    """
    U, S, Vh = _update_svd(W_base, W_end)
    return _rebuild(W_base, U, S, Vh, dg_rank(S.numpy(), tuple(W_base.shape), scale))


def keep_top_r(W_base, W_end, r: int):
    """``W_base`` plus the top ``r`` singular directions of ``dW = W_end - W_base``.

    Parameters
    ----------
    W_base, W_end : torch.Tensor, shape (m, n)
    r : int
        Directions kept, ``0 <= r``; ``r >= min(m, n)`` returns ``W_end`` up to float error.

    Returns
    -------
    torch.Tensor, shape (m, n), float32
    """
    if not isinstance(r, int) or r < 0:
        raise ValueError(f"r must be a count >= 0, got {r!r}")
    U, S, Vh = _update_svd(W_base, W_end)
    return _rebuild(W_base, U, S, Vh, min(r, S.numel()))


def matrix_state(base: State, end: State, names, fn: Callable) -> dict:
    """The end state with ``fn(W_base, W_end)`` applied to the matrices ``names`` (stored orientation).

    Every other tensor keeps the end's values (float32). ValueError when the
    states differ or a name is not a 2-D tensor of both.
    """
    import torch

    check_states({"base": base, "end": end})
    out = {k: v.to(torch.float32) for k, v in end.items()}
    for name in names:
        if name not in end or end[name].ndim != 2:
            raise ValueError(f"tensor {name!r} is not a matrix of the checkpoints")
        out[name] = fn(base[name], end[name])
    return out
