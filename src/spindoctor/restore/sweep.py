"""In-memory restoration sweeps: patch a loaded model, probe it, put it back.

A sweep loads the tuned model once and factorises each selected matrix of the
reference and the tuned checkpoint once (through the drift engine's on-disk
cache). Each sweep point computes its edits from those factors, patches the
model's parameters in place (:func:`patched`), runs the ID and OOD probes, and
restores the saved parameters bitwise. No checkpoint is written per point and
no SVD is recomputed.

Sweeps (docs/design.md, "Restoration edit"; the paper's Figures 5-7):
* ``layers``: every matrix of one block of layers at a time (Figure 5);
* ``ranks``: the top-k directions of every layer, for several k (Figure 6);
* ``impose``: reference = SFT checkpoint, tuned = RL checkpoint; the RL model
  with the SFT directions imposed on all layers and on each block (Figure 7).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spindoctor.restore.edit import restore_count, restore_matrix

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from spindoctor.spectral.svd import Factorization
    from spindoctor.spectral.tensors import MatrixInfo


@dataclass
class MatrixFactors:
    """One selected matrix: where it sits, its tuned weight (out, in) and both factorisations."""

    info: MatrixInfo
    W_tuned: torch.Tensor
    f_ref: Factorization
    f_tuned: Factorization


def load_factors(ref_dir, tuned_dir, infos: list[MatrixInfo], cache_dir=None, dtype: str = "float32",
                 device: str = "cpu", progress: bool = True) -> list[MatrixFactors]:
    """Factorise (or load from the cache) every matrix in ``infos`` for both checkpoints."""
    from rich.progress import track

    from spindoctor.spectral.svd import FactorCache, load_factorization
    from spindoctor.spectral.tensors import Checkpoint

    ref, tuned = Checkpoint(ref_dir), Checkpoint(tuned_dir)
    cache = FactorCache(cache_dir) if cache_dir else None
    fp_ref = ref.fingerprint(cache.root) if cache else None
    fp_tuned = tuned.fingerprint(cache.root) if cache else None
    out = []
    for info in track(infos, description="factorising", disable=not progress, transient=True):
        W = tuned.matrix(info.name, check_finite=False)  # checked by load_factorization on a miss
        f_ref, _ = load_factorization(ref, info.name, cache, dtype, device=device, fingerprint=fp_ref)
        f_tuned, _ = load_factorization(tuned, info.name, cache, dtype, device=device, fingerprint=fp_tuned, W=W)
        out.append(MatrixFactors(info, W, f_ref, f_tuned))
    return out


def point_edits(factors: list[MatrixFactors], layers: set[int] | None, k_top: int | float,
                k_tail: int | float = 0, mode: str = "direction") -> dict[str, torch.Tensor]:
    """The new weights (stored orientation) of one sweep point; ``layers=None`` means all."""
    edits = {}
    for mf in factors:
        if layers is not None and mf.info.layer not in layers:
            continue
        rank = mf.f_tuned.rank
        top = restore_count(k_top, rank)
        tail = min(restore_count(k_tail, rank), rank - top)
        if top == 0 and tail == 0:
            continue
        new = restore_matrix(mf.W_tuned, mf.f_ref, mf.f_tuned, top, tail, mode)  # type: ignore[arg-type]
        edits[mf.info.name] = new.T if mf.info.conv1d else new
    return edits


@contextmanager
def patched(model: Any, edits: dict[str, torch.Tensor]) -> Iterator[Any]:
    """Temporarily replace parameters of ``model`` (by checkpoint tensor name) with ``edits``.

    The original values are saved and copied back on exit, even on error, so
    the model is bitwise what it was before.
    """
    import torch

    from spindoctor.errors import UserError

    params = dict(model.named_parameters())
    missing = [n for n in edits if n not in params]
    if missing:
        raise UserError(f"the loaded model has no parameter {missing[0]!r} (tied or renamed weights?)")
    saved = {}
    try:
        with torch.no_grad():
            for name, new in edits.items():
                p = params[name]
                if tuple(p.shape) != tuple(new.shape):
                    raise UserError(f"edit for {name!r} has shape {tuple(new.shape)}, parameter is {tuple(p.shape)}")
                saved[name] = p.detach().clone()
                p.copy_(new.to(device=p.device, dtype=p.dtype))
        yield model
    finally:
        with torch.no_grad():
            for name, old in saved.items():
                params[name].copy_(old)


def recovered_share(acc_point: float, acc_tuned: float, acc_ref: float) -> float | None:
    """Share of the accuracy lost from ref to tuned that a point wins back.

    (acc_point - acc_tuned) / (acc_ref - acc_tuned); None when nothing was lost
    (acc_ref <= acc_tuned), since the share is then undefined.
    """
    lost = acc_ref - acc_tuned
    if lost <= 0:
        return None
    return (acc_point - acc_tuned) / lost
