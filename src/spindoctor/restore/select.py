"""Which layers and matrices a restoration touches.

Layer specs (``--layers``), for a model with L decoder layers numbered 0..L-1:

* ``all`` every layer; ``none`` no layer (use with ``--embeddings``);
* ``0-9``, ``0,3,5-7`` explicit indices and inclusive ranges;
* ``first:25%``, ``last:25%``, ``middle:50%`` a share of the layers, rounded
  up (at least one layer), from the start, the end, or centred;
* :func:`equal_blocks` splits 0..L-1 into blocks for a sweep (the reference
  used blocks of 10 layers of a 40-layer model: 0-9, 10-19, 20-29, 30-39).
"""

from __future__ import annotations

import math
import re

from spindoctor.errors import UserError

_SHARE = re.compile(r"^(first|last|middle):(\d+(?:\.\d+)?)%$")
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """Layer indices selected by ``spec`` (sorted, unique); UserError on a bad spec."""
    spec = spec.strip().replace(" ", "")
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    if spec == "all":
        return list(range(n_layers))
    if spec == "none":
        return []
    share = _SHARE.match(spec)
    if share:
        where, pct = share.group(1), float(share.group(2))
        if not 0 < pct <= 100:
            raise UserError(f"layers {spec}: the share must be in (0, 100]%")
        count = max(1, math.ceil(n_layers * pct / 100 - 1e-9))
        start = {"first": 0, "last": n_layers - count, "middle": (n_layers - count) // 2}[where]
        return list(range(start, start + count))
    out: set[int] = set()
    for part in spec.split(","):
        m = _RANGE.match(part)
        if not m:
            raise UserError(f"layers {spec!r}: expected all, none, 0-9, 0,3,5-7, first:25%, last:25% or middle:50%")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo > hi or hi >= n_layers:
            raise UserError(f"layers {spec!r}: {part} is outside 0..{n_layers - 1}")
        out.update(range(lo, hi + 1))
    return sorted(out)


def equal_blocks(n_layers: int, block_size: int | None = None, n_blocks: int | None = None) -> list[list[int]]:
    """Consecutive blocks of layers: by ``block_size`` (last block may be short) or ``n_blocks`` (sizes differ by <= 1)."""
    if (block_size is None) == (n_blocks is None):
        raise UserError("give exactly one of block_size and blocks")
    if block_size is not None:
        if block_size < 1:
            raise UserError(f"block_size must be >= 1, got {block_size}")
        return [list(range(i, min(i + block_size, n_layers))) for i in range(0, n_layers, block_size)]
    assert n_blocks is not None
    if not 1 <= n_blocks <= max(1, n_layers):
        raise UserError(f"blocks must be in 1..{n_layers}, got {n_blocks}")
    bounds = [i * n_layers // n_blocks for i in range(n_blocks + 1)]
    return [list(range(bounds[i], bounds[i + 1])) for i in range(n_blocks)]


def block_label(layers: list[int]) -> str:
    """``[0, 1, 2]`` -> ``"0-2"``; ``[]`` -> ``"none"``."""
    if not layers:
        return "none"
    return str(layers[0]) if len(layers) == 1 else f"{layers[0]}-{layers[-1]}"


def parse_k(text: str) -> int | float:
    """A k as typed: ``0.2`` or ``20%`` (a fraction of each matrix's rank) or ``512`` (a count)."""
    text = text.strip()
    try:
        if text.endswith("%"):
            value: int | float = float(text[:-1]) / 100
        elif "." in text:
            value = float(text)
        else:
            value = int(text)
    except ValueError as exc:
        raise UserError(f"k must be a count (512), a fraction (0.2) or a percentage (20%), got {text!r}") from exc
    if isinstance(value, float) and not 0 <= value <= 1:
        raise UserError(f"a fractional k must be in [0, 1], got {text!r}")
    if value < 0:
        raise UserError(f"k must be >= 0, got {text!r}")
    return value
