"""Thin SVD factorisations with a deterministic sign convention and an on-disk cache.

Public API (directional restoration reuses it):

- :class:`Factorization` ``(U, S, Vh)``: thin SVD ``W = U diag(S) Vh`` of an
  ``(m, n)`` matrix, ``U (m, r)``, ``S (r,)`` descending, ``Vh (r, n)``,
  ``r = min(m, n)`` (or the requested rank for randomized top-k), sign-fixed.
- :func:`factorize` computes one (methods below) on CPU or CUDA.
- :class:`FactorCache` stores factorisations as safetensors files keyed by the
  checkpoint's content fingerprint, tensor name, dtype and method, so the base
  model of a study is factorised once however many checkpoints it is compared with.
  Every read is verified (:mod:`spindoctor.spectral.cache_entry`); an unsound entry
  is recomputed and overwritten, with a :class:`CacheEntryWarning`.
- :func:`checkpoint_factorizations` yields ``(MatrixInfo, W, Factorization)``
  for selected tensors of a checkpoint, loading from or filling the cache;
  :func:`load_factorization` does it for one tensor name.

Methods
-------
``gram`` (default for float32): eigendecomposition of the Gram matrix of the
short side in float64 (``torch.linalg.eigh``), the other side recovered as
``W^T U / s``. Singular values are accurate to about ``eps64 * kappa^2``
relative (float32 SVD: ``eps32 * kappa``). The Gram side's vectors err by
about ``eps64 * kappa * s_max / gap``, ``1e-9 * kappa`` times a float32 SVD's
``eps32 * s_max / gap``; the recovered side's by ``kappa`` times more, which
stays within a float32 SVD's error while ``kappa = s_max / s_min <=
GRAM_MAX_COND`` (3e4). Beyond that, or for a zero matrix, it falls back to
``svd`` in the requested dtype. It is faster than ``torch.linalg.svd`` on CPU.
``svd``: ``torch.linalg.svd`` in the requested dtype (default for float64).
``randomized``: ``torch.svd_lowrank`` top-``rank`` factors, with the relative
residual ``||W - U S Vh||_F / ||W||_F`` stored in ``Factorization.error``.

Sign convention (scikit-learn's ``svd_flip``, u-based): the largest-magnitude
entry of each column of ``U`` is positive, and the row of ``Vh`` flips with it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from spindoctor.errors import UserError
from spindoctor.spectral.cache_entry import (
    EntryId,
    all_finite,
    entry_metadata,
    is_factor_entry,
    problem,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from spindoctor.spectral.tensors import Checkpoint, MatrixInfo

Method = Literal["auto", "gram", "svd", "randomized"]
CACHE_VERSION = 2  # 2: entries carry their identity and a checksum (cache_entry.py)
GRAM_MAX_COND = 3e4  # beyond this condition number the Gram route is less accurate than a float32 SVD


class CacheEntryWarning(UserWarning):
    """A factor-cache entry failed verification and is recomputed."""


@dataclass
class Factorization:
    """Thin SVD ``W = U diag(S) Vh``, sign-fixed (see module docstring).

    Attributes
    ----------
    U : torch.Tensor, shape (m, r)
    S : torch.Tensor, shape (r,), descending, same units as W
    Vh : torch.Tensor, shape (r, n)
    method : str
        ``gram``, ``svd`` or ``randomized`` (what actually ran).
    error : float or None
        Randomized SVD only: ``||W - U S Vh||_F / ||W||_F``.
    """

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor
    method: str = "svd"
    error: float | None = None

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])

    def to(self, device=None, dtype=None) -> Factorization:
        return Factorization(
            self.U.to(device=device, dtype=dtype), self.S.to(device=device, dtype=dtype),
            self.Vh.to(device=device, dtype=dtype), self.method, self.error,
        )


def torch_dtype(name: str):
    """``float32`` / ``float64`` -> torch dtype."""
    import torch

    if name not in ("float32", "float64"):
        raise UserError(f"dtype must be float32 or float64, got {name!r}")
    return torch.float32 if name == "float32" else torch.float64


def sign_fix(U: torch.Tensor, Vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip singular-vector pairs so each U column's largest-|.| entry is positive.

    Parameters
    ----------
    U : (m, r) tensor
    Vh : (r, n) tensor

    Returns
    -------
    (U, Vh) with ``U[:, i]`` and ``Vh[i]`` multiplied by the same sign; ``U diag(S) Vh`` unchanged.
    """
    import torch

    idx = U.abs().argmax(dim=0)
    signs = torch.sign(U[idx, torch.arange(U.shape[1], device=U.device)])
    signs[signs == 0] = 1
    return U * signs, Vh * signs[:, None]


def _gram_svd(W64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Thin SVD via eigh of the short-side Gram matrix in float64; None if ill-conditioned."""
    import torch

    m, n = W64.shape
    wide = m <= n
    G = W64 @ W64.T if wide else W64.T @ W64
    evals, evecs = torch.linalg.eigh(G)  # ascending
    evals, evecs = evals.flip(0), evecs.flip(1)
    s = evals.clamp_min(0).sqrt()
    if s[0] == 0 or s[-1] * GRAM_MAX_COND < s[0]:
        return None
    if wide:
        U = evecs
        Vh = (U.T @ W64) / s[:, None]
    else:
        Vh = evecs.T
        U = (W64 @ evecs) / s
    return U, s, Vh


def factorize(
    W: torch.Tensor,
    dtype: str = "float32",
    method: Method = "auto",
    device: str = "cpu",
    rank: int | None = None,
    niter: int = 4,
) -> Factorization:
    """Thin, sign-fixed SVD of one matrix.

    Parameters
    ----------
    W : (m, n) tensor, any float dtype
    dtype : ``float32`` or ``float64``, dtype of the returned factors
    method : ``auto`` (``gram`` for float32, ``svd`` for float64), ``gram``, ``svd``, ``randomized``
    device : torch device string the work runs on
    rank : top-k for ``randomized`` (required there, ignored otherwise)
    niter : power iterations for ``randomized``

    Returns
    -------
    Factorization on ``device`` in ``dtype``.
    """
    import torch

    out_dtype = torch_dtype(dtype)
    if W.ndim != 2:
        raise ValueError(f"factorize expects a 2-D matrix, got shape {tuple(W.shape)}")
    if method == "auto":
        method = "gram" if dtype == "float32" else "svd"
    W = W.to(device)
    error = None
    if method == "randomized":
        if not rank or rank < 1:
            raise UserError(f"method 'randomized' needs rank >= 1, got rank={rank!r}")
        k = min(rank, *W.shape)
        Wd = W.to(torch.float64 if dtype == "float64" else torch.float32)
        U, S, V = torch.svd_lowrank(Wd, q=min(k + 10, *W.shape), niter=niter)
        U, S, Vh = U[:, :k], S[:k], V[:, :k].T
        error = float(torch.linalg.norm(Wd - (U * S) @ Vh) / torch.linalg.norm(Wd).clamp_min(1e-300))
    elif method == "gram":
        res = _gram_svd(W.to(torch.float64))
        if res is None:  # ill-conditioned or zero: the Gram route would lose accuracy
            method = "svd"
            U, S, Vh = torch.linalg.svd(W.to(out_dtype), full_matrices=False)
        else:
            U, S, Vh = res
    elif method == "svd":
        U, S, Vh = torch.linalg.svd(W.to(out_dtype), full_matrices=False)
    else:
        raise UserError(f"method must be auto, gram, svd or randomized, got {method!r}")
    U, Vh = sign_fix(U, Vh)
    # contiguous, like factors loaded from the cache, so cold and warm runs give bitwise-equal metrics
    U, S, Vh = (x.to(out_dtype).contiguous() for x in (U, S, Vh))
    return Factorization(U, S, Vh, method, error)


class FactorCache:
    """Factorisations on disk: ``root/<key[:2]>/<key>.safetensors`` (atomic writes, verified reads).

    The key hashes the checkpoint content fingerprint, tensor name, dtype,
    method, rank and :data:`CACHE_VERSION`. Each entry also stores that identity
    and a checksum in its metadata (:mod:`spindoctor.spectral.cache_entry`); an
    entry that is unreadable, answers another request, has the wrong shapes,
    fails its checksum or holds NaN/Inf is not used: :meth:`load` warns once
    (:class:`CacheEntryWarning`) and returns None, so the caller recomputes and
    overwrites it. ``rejected`` counts such entries.
    """

    def __init__(self, root: str | Path):
        import threading

        self.root = Path(root)
        self.rejected = 0
        self._lock = threading.Lock()

    @staticmethod
    def key(fingerprint: str, name: str, dtype: str, method: str, rank: int | None = None) -> str:
        raw = json.dumps([CACHE_VERSION, fingerprint, name, dtype, method, rank])
        return hashlib.sha256(raw.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def load(self, key: str, entry: EntryId) -> Factorization | None:
        """The verified factorisation stored under ``key`` for ``entry``; None if absent or unsound."""
        import os

        from safetensors import safe_open

        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with safe_open(str(p), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            return self._reject(p, f"is unreadable ({type(exc).__name__})")
        why = problem(meta, tensors, entry)
        if why is not None:
            return self._reject(p, why)
        try:
            os.utime(p)  # mtime = last use, for `spindoctor cache clear --older-than`
        except OSError:
            pass
        err = meta.get("error")
        return Factorization(tensors["U"], tensors["S"], tensors["Vh"], meta["method"], float(err) if err else None)

    def _reject(self, path: Path, why: str) -> None:
        with self._lock:
            self.rejected += 1
        warnings.warn(f"factor cache entry {path} {why}; recomputing it", CacheEntryWarning, stacklevel=3)
        return None

    def save(self, key: str, f: Factorization, entry: EntryId, checkpoint: str | None = None) -> None:
        """Store ``f`` under ``key`` with ``entry``'s identity and a checksum (atomic: unique temp name, rename).

        Factors holding NaN/Inf are not stored.
        """
        from safetensors.torch import save_file

        from spindoctor.io import atomic_path

        tensors = {"U": f.U.contiguous().cpu(), "S": f.S.contiguous().cpu(), "Vh": f.Vh.contiguous().cpu()}
        if not all_finite(tensors):
            return
        meta = entry_metadata(entry, f.method, f.error, checkpoint, tensors)
        with atomic_path(self.path(key)) as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    def entries(self) -> list[CacheEntry]:
        """Every stored factorisation with its size, last use and label (headers only are read)."""
        return self.scan()[0]

    def scan(self) -> tuple[list[CacheEntry], list[Path]]:
        """``(entries, skipped)``: the factor-cache entries under ``root/??/*.safetensors``, and the
        files there that are not entries (:func:`~spindoctor.spectral.cache_entry.is_factor_entry`,
        headers only; unreadable ones included), which are never counted or removed."""
        from safetensors import safe_open

        found, skipped = [], []
        for p in sorted(self.root.glob("??/*.safetensors")):
            try:
                st = p.stat()
                with safe_open(str(p), framework="pt") as fh:
                    meta, names = fh.metadata() or {}, set(fh.keys())
            except Exception:  # unreadable: not recognisably ours, so never deleted
                meta, names = {}, set()
            if not is_factor_entry(p, meta, names):
                skipped.append(p)
                continue
            found.append(CacheEntry(p, st.st_size, st.st_mtime, meta.get("fingerprint"), meta.get("checkpoint"),
                                    meta.get("tensor")))
        return found, skipped

    def remove(self, entries: list[CacheEntry]) -> int:
        """Delete ``entries`` (from :meth:`scan`) and folders left empty; return the bytes freed."""
        freed = 0
        for e in entries:
            try:
                e.path.unlink()
                freed += e.size
            except FileNotFoundError:
                continue
            try:
                e.path.parent.rmdir()
            except OSError:  # not empty
                pass
        return freed


@dataclass
class CacheEntry:
    """One cached factorisation file; the label fields are None for entries written before labels existed."""

    path: Path
    size: int
    last_used: float  # POSIX seconds (file mtime: written or last loaded)
    fingerprint: str | None
    checkpoint: str | None
    tensor: str | None


def load_factorization(
    ckpt: Checkpoint,
    name: str,
    cache: FactorCache | None = None,
    dtype: str = "float32",
    method: Method = "auto",
    device: str = "cpu",
    rank: int | None = None,
    fingerprint: str | None = None,
    W: torch.Tensor | None = None,
) -> tuple[Factorization, bool]:
    """Factorisation of tensor ``name`` of ``ckpt``, from ``cache`` when present.

    ``W`` (the matrix, when the caller has read it) need not be checked for
    NaN/Inf: it is checked here before factorising; a cache hit needs no check.

    Returns
    -------
    (Factorization on ``device``, hit) where ``hit`` says it came from the cache.
    """
    if method == "auto":
        method = "gram" if dtype == "float32" else "svd"
    key = entry = None
    if cache is not None:
        m_n = ckpt.matrix_shape(name)
        entry = EntryId(fingerprint or ckpt.fingerprint(cache.root), name, dtype, method,
                        rank if method == "randomized" else None, m_n)
        key = FactorCache.key(entry.fingerprint, name, dtype, method, entry.rank)
        hit = cache.load(key, entry)
        if hit is not None:
            return hit.to(device=device), True
    if W is None:
        W = ckpt.matrix(name)
    else:
        ckpt.check_finite(name, W)
    f = factorize(W, dtype=dtype, method=method, device=device, rank=rank)
    if cache is not None and key is not None and entry is not None:
        cache.save(key, f, entry, str(ckpt.path.resolve()))
    return f, False


def checkpoint_factorizations(
    ckpt: Checkpoint,
    infos: list[MatrixInfo],
    cache: FactorCache | None = None,
    dtype: str = "float32",
    method: Method = "auto",
    device: str = "cpu",
    rank: int | None = None,
) -> Iterator[tuple[MatrixInfo, torch.Tensor, Factorization]]:
    """Yield ``(info, W (out, in) float32, Factorization)`` one matrix at a time."""
    fp = ckpt.fingerprint(cache.root) if cache is not None else None
    for info in infos:
        W = ckpt.matrix(info.name)
        f, _ = load_factorization(ckpt, info.name, cache, dtype, method, device, rank, fp, W)
        yield info, W, f
