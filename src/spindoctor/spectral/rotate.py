"""Known rotations of singular vectors: ground truth for testing drift on real weights.

:func:`givens_rotate` turns the left singular vectors ``u_a`` and ``u_b`` of a
matrix by an angle ``t`` in their own plane: ``W' = R W`` with ``R`` the Givens
rotation of that plane. ``W'`` has the same singular values, ``V`` is unchanged,
``u'_a = cos t u_a + sin t u_b`` and ``u'_b = cos t u_b - sin t u_a``, so the
per-index angles at ``a`` and ``b`` are exactly ``t`` and every top-k subspace
holding ``a`` but not ``b`` has one principal angle ``t`` (the rest 0).
:func:`rotate_checkpoint` writes a copy of a checkpoint with chosen matrices so rotated.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def givens_rotate(W: torch.Tensor, angle: float, a: int = 0, b: int = -1) -> torch.Tensor:
    """Rotate left singular vectors ``a`` and ``b`` of ``W`` by ``angle`` radians.

    Parameters
    ----------
    W : (m, n) matrix
    angle : rotation angle in radians
    a, b : singular indices (descending order) spanning the plane; ``b=-1`` is the last

    Returns
    -------
    (m, n) matrix ``R W`` in W's dtype (computed in float64).
    """
    import math

    import torch

    W64 = W.double()
    _, U = torch.linalg.eigh(W64 @ W64.T)  # left singular vectors, ascending order
    U = U.flip(1)[:, : min(W.shape)]
    ua, ub = U[:, a], U[:, b]
    c, s = math.cos(angle), math.sin(angle)
    # R = I + (c - 1)(ua ua^T + ub ub^T) + s (ub ua^T - ua ub^T); apply without forming R.
    pa, pb = ua @ W64, ub @ W64
    out = W64 + (c - 1) * (torch.outer(ua, pa) + torch.outer(ub, pb)) + s * (torch.outer(ub, pa) - torch.outer(ua, pb))
    return out.to(W.dtype)


def rotate_checkpoint(src: str | Path, dst: str | Path, regex: str, angle: float, a: int = 0, b: int = -1) -> list[str]:
    """Copy checkpoint ``src`` to ``dst`` (single model.safetensors) rotating matrices matching ``regex``.

    Returns the names of the rotated tensors. config.json and tokenizer files are copied.
    """
    import re
    import shutil

    from safetensors.torch import save_file

    from spindoctor.io import atomic_path
    from spindoctor.spectral.tensors import Checkpoint, parse_name

    ckpt, dst = Checkpoint(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    folder = ckpt.path if ckpt.path.is_dir() else ckpt.path.parent
    for f in folder.iterdir():
        if f.is_file() and f.suffix in (".json", ".jinja", ".txt", ".model") and "safetensors" not in f.name:
            shutil.copy2(f, dst / f.name)
    pattern, rotated, tensors = re.compile(regex), [], {}
    for name in ckpt.names():
        t = ckpt.tensor(name)
        if t.ndim == 2 and pattern.search(name):
            conv1d = parse_name(name).conv1d
            W = t.T if conv1d else t
            W = givens_rotate(W, angle, a, b)
            t = W.T if conv1d else W
            rotated.append(name)
        tensors[name] = t.contiguous()
    with atomic_path(dst / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    return rotated
