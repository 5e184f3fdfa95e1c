"""What a factor-cache entry must prove before it is used: identity, shapes, finiteness, checksum.

An entry is one safetensors file holding ``U``, ``S`` and ``Vh`` (see
:class:`spindoctor.spectral.svd.FactorCache`). Its metadata (all strings) names
the request it answers, so an entry copied or renamed onto another key is
recognised, and carries a CRC-32 of everything else in the file:

- ``version``: :data:`ENTRY_VERSION`;
- ``fingerprint``, ``tensor``, ``dtype``, ``request`` (the method asked for:
  ``gram``, ``svd`` or ``randomized``) and ``rank`` (``""`` unless randomized):
  the identity, compared with the request on every read;
- ``method`` (what ran: ``gram`` may fall back to ``svd``), ``error``
  (randomized residual), ``checkpoint`` (path, for ``spindoctor cache info``);
- ``checksum``: ``<algorithm>:<hex digest>`` of the other metadata (canonical
  JSON) followed by the raw bytes of ``U``, ``S`` and ``Vh`` in that order.

:func:`is_factor_entry` says, from the header alone, whether a file is a
factor-cache entry at all: ``spindoctor cache clear`` deletes only those, so a
wrong ``--cache`` never costs a user file (docs/design.md, "Run folder").

The algorithm is XXH3-64 (the ``xxhash`` package, which ``datasets`` already
requires; about 16 GiB/s, against 1.5 GiB/s for zlib's CRC-32, so verifying a
warm run's factors costs a few percent of the run), or CRC-32 where xxhash is
missing. Either detects any flipped bit and misses random damage with
probability about 2^-64 (2^-32); an entry whose algorithm this installation
lacks is recomputed. The checksum guards against accidents (disk, copies,
partial edits), not against someone forging entries: the cache is the user's
own folder.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

ENTRY_VERSION = "2"
IDENTITY = ("fingerprint", "tensor", "dtype", "request", "rank")
METHODS = ("gram", "svd", "randomized")
_ENTRY_NAME = re.compile(r"^[0-9a-f]{64}\.safetensors$")


def is_factor_entry(path: Path, meta: dict[str, str] | None, names: set[str]) -> bool:
    """Whether a file is a factor-cache entry (any format version): named ``<key>.safetensors``
    in folder ``<key[:2]>``, a plain file, holding exactly ``U``, ``S``, ``Vh`` (``names``, from
    the header) and metadata with a numeric ``version`` and a known ``method``."""
    path = Path(path)
    if not _ENTRY_NAME.match(path.name) or path.parent.name != path.name[:2] or path.is_symlink():
        return False
    meta = meta or {}
    return names == {"U", "S", "Vh"} and str(meta.get("version", "")).isdigit() and meta.get("method") in METHODS


@dataclass(frozen=True)
class EntryId:
    """The request a cache entry answers, and the factor shapes it implies.

    ``shape`` is the matrix's ``(m, n)``; the factors are ``U (m, r)``, ``S (r,)``,
    ``Vh (r, n)`` with ``r = min(m, n)``, or ``min(rank, m, n)`` for ``randomized``.
    """

    fingerprint: str
    tensor: str
    dtype: str
    request: str
    rank: int | None
    shape: tuple[int, int]

    def labels(self) -> dict[str, str]:
        return {"fingerprint": self.fingerprint, "tensor": self.tensor, "dtype": self.dtype,
                "request": self.request, "rank": "" if self.rank is None else str(self.rank)}

    @property
    def r(self) -> int:
        m, n = self.shape
        return min(self.rank, m, n) if self.request == "randomized" and self.rank else min(m, n)


def available() -> tuple[str, ...]:
    """Checksum algorithms this installation can compute, preferred first."""
    import importlib.util

    return ("xxh3_64", "crc32") if importlib.util.find_spec("xxhash") else ("crc32",)


def checksum(meta: dict[str, str], tensors: dict[str, torch.Tensor], algorithm: str | None = None) -> str:
    """``<algorithm>:<hex>`` of ``meta`` without ``checksum``, then the bytes of U, S, Vh."""
    algorithm = algorithm or available()[0]
    head = json.dumps({k: v for k, v in sorted(meta.items()) if k != "checksum"}, separators=(",", ":")).encode()
    views = [memoryview(tensors[name].contiguous().numpy()).cast("B") for name in ("U", "S", "Vh")]
    if algorithm == "xxh3_64":
        import xxhash

        h = xxhash.xxh3_64(head)
        for v in views:
            h.update(v)
        return f"xxh3_64:{h.hexdigest()}"
    crc = zlib.crc32(head)
    for v in views:
        crc = zlib.crc32(v, crc)
    return f"crc32:{crc:08x}"


def entry_metadata(entry: EntryId, method: str, error: float | None, checkpoint: str | None,
                   tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """The metadata :meth:`FactorCache.save` writes, checksum included."""
    meta = {"version": ENTRY_VERSION, **entry.labels(), "method": method}
    if error is not None:
        meta["error"] = repr(error)
    if checkpoint is not None:
        meta["checkpoint"] = checkpoint
    meta["checksum"] = checksum(meta, tensors)
    return meta


def all_finite(tensors: dict[str, torch.Tensor]) -> bool:
    """True when no factor (a CPU tensor) holds NaN or Inf.

    numpy's ``isfinite`` runs at several GB/s on one core; torch's reductions on a
    busy 2-core machine ran 50x slower in the bench of this check.
    """
    import numpy as np

    return all(bool(np.isfinite(t.numpy()).all()) for t in tensors.values())


def problem(meta: dict[str, str], tensors: dict[str, torch.Tensor], entry: EntryId) -> str | None:
    """Why an entry read from disk must not be used for ``entry``, or None when it is sound."""
    import torch

    if meta.get("version") != ENTRY_VERSION:
        return f"has format version {meta.get('version')!r}, not {ENTRY_VERSION}"
    want = entry.labels()
    wrong = [k for k in IDENTITY if meta.get(k) != want[k]]
    if wrong:
        return "answers another request (" + ", ".join(f"{k} {meta.get(k)!r} != {want[k]!r}" for k in wrong) + ")"
    if set(tensors) != {"U", "S", "Vh"}:
        return f"holds tensors {sorted(tensors)}, not U, S, Vh"
    (m, n), r = entry.shape, entry.r
    expected = {"U": (m, r), "S": (r,), "Vh": (r, n)}
    dtype = torch.float32 if entry.dtype == "float32" else torch.float64
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape or t.dtype != dtype:
            return f"has {name} {tuple(t.shape)} {t.dtype}, expected {shape} {dtype}"
    algorithm = meta.get("checksum", "").partition(":")[0]
    if algorithm not in available():
        return f"has a checksum this installation cannot check ({algorithm or 'none'})"
    if meta["checksum"] != checksum(meta, tensors, algorithm):
        return "fails its checksum"
    if not all_finite(tensors):
        return "holds NaN or Inf"
    return None
