"""Spectral drift: did fine-tuning change singular values or rotate singular vectors?

Entry point: :func:`drift` (``spindoctor drift REF TUNED`` on the command line)
returns a :class:`DriftResult`; ``result.save(out)`` writes metrics.json,
per_matrix.csv, spectra.safetensors and figures.

Building blocks reused by directional restoration (:mod:`spindoctor.restore`):

- :mod:`spindoctor.spectral.tensors`: :class:`Checkpoint` (streaming
  safetensors), :func:`parse_name`, :func:`select_matrices`, :func:`paired_matrices`;
- :mod:`spindoctor.spectral.svd`: :class:`Factorization`, :func:`factorize`,
  :class:`FactorCache`, :func:`load_factorization`, :func:`checkpoint_factorizations`;
- :mod:`spindoctor.spectral.metrics`: the metric functions.

Importing this package does not import torch; the functions import it when called.
"""

from spindoctor.spectral.run import DriftConfig, DriftResult, drift, parse_k
from spindoctor.spectral.svd import (
    FactorCache,
    Factorization,
    checkpoint_factorizations,
    factorize,
    load_factorization,
)
from spindoctor.spectral.tensors import (
    Checkpoint,
    MatrixInfo,
    paired_matrices,
    parse_name,
    select_matrices,
)

__all__ = [
    "Checkpoint", "DriftConfig", "DriftResult", "FactorCache", "Factorization", "MatrixInfo",
    "checkpoint_factorizations", "drift", "factorize", "load_factorization", "paired_matrices",
    "parse_k", "parse_name", "select_matrices",
]
