"""Paired statistics for comparing two models on the same probe hands.

Every comparison spindoctor makes (OOD peak vs SFT end, RL before vs after, a
restored model vs the tuned one or the reference) scores two models on the
*same* hands, so the per-hand differences carry the evidence: their spread is
far smaller than the unpaired ``sqrt(p (1 - p) / n)`` of each side
(docs/design.md, "Evidence"). This module holds the pure functions behind it:

* :func:`paired_difference`: mean of ``b - a`` over hands with a percentile
  paired-bootstrap interval, and for 0/1 correctness the exact McNemar p-value
  (a two-sided binomial test on the discordant hands).
* :func:`recovered_share`: the share of what was lost from ``reference`` to
  ``tuned`` that ``point`` wins back, with a joint paired-bootstrap interval.
* :func:`verdict` and :func:`hands_to_resolve`: the rule that turns an
  interval into "reproduced", "contradicted" or "inconclusive", and how many
  hands an inconclusive one would need.

Only numpy and scipy; nothing here knows about models or files.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
N_RESAMPLES = 4000
Verdict = Literal["reproduced", "contradicted", "inconclusive"]


@dataclass(frozen=True)
class PairedDiff:
    """The mean per-hand difference ``b - a`` and its uncertainty.

    Attributes
    ----------
    estimate : float
        ``mean(b - a)`` over the ``n`` hands (units of the inputs: accuracy
        points as a fraction, or nats per token for the loss proxy).
    lo, hi : float
        Percentile paired-bootstrap interval at ``confidence``.
    se : float
        Standard error of the mean difference, ``std(b - a, ddof=1) / sqrt(n)``
        (0 when ``n == 1``).
    n : int
        Number of paired hands.
    p_value : float or None
        Exact McNemar p-value (two-sided) when both inputs are 0/1, else None.
    discordant : tuple of int or None
        ``(a right & b wrong, a wrong & b right)`` for 0/1 inputs, else None.
    confidence : float
        Coverage of ``[lo, hi]``.
    """

    estimate: float
    lo: float
    hi: float
    se: float
    n: int
    p_value: float | None
    discordant: tuple[int, int] | None
    confidence: float

    def to_dict(self) -> dict:
        out = asdict(self)
        out["discordant"] = list(self.discordant) if self.discordant is not None else None
        return out


def _paired_arrays(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D float64 arrays of the same positive length, all finite."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"paired inputs must be 1-D, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise ValueError(f"paired inputs must have the same length, got {a.size} and {b.size}")
    if a.size == 0:
        raise ValueError("paired inputs are empty: no hands to compare")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired inputs hold NaN or Inf")
    return a, b


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.isin(x, (0.0, 1.0)).all())


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    Parameters
    ----------
    a_only, b_only : int
        Hands that only model ``a`` (resp. only ``b``) answered correctly.

    Returns
    -------
    float
        ``P(|X - m/2| >= |a_only - m/2|)`` for ``X ~ Binomial(m, 1/2)``,
        ``m = a_only + b_only`` (McNemar 1947, exact form); 1.0 when ``m = 0``.
    """
    if a_only < 0 or b_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {a_only} and {b_only}")
    m = a_only + b_only
    if m == 0:
        return 1.0
    return float(sps.binomtest(int(b_only), int(m), 0.5, alternative="two-sided").pvalue)


def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples, n)`` hand indices drawn with replacement (seeded)."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_difference(
    a, b, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> PairedDiff:
    """Mean per-hand difference ``b - a`` with a paired-bootstrap interval.

    Parameters
    ----------
    a, b : array_like, shape (n,)
        Per-hand scores of two models on the same hands, in the same order:
        0/1 correctness or a per-hand loss (nats per token).
    confidence : float
        Interval coverage (default 0.95).
    n_resamples : int
        Bootstrap resamples of the hands (seeded, so a rerun gives the same
        interval).
    seed : int
        Seed of the resampling.

    Returns
    -------
    PairedDiff
        With the exact McNemar p-value when both inputs are 0/1.
    """
    a, b = _paired_arrays(a, b)
    diff = b - a
    n = diff.size
    estimate = float(diff.mean())
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    if np.all(diff == diff[0]):
        lo = hi = estimate  # every resample gives the same mean
    else:
        means = diff[_resample_indices(n, n_resamples, seed)].mean(axis=1)
        lo, hi = _percentile_interval(means, confidence)
    p_value = discordant = None
    if _is_binary(a) and _is_binary(b):
        discordant = (int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum()))
        p_value = mcnemar_exact(*discordant)
    return PairedDiff(estimate, lo, hi, se, n, p_value, discordant, confidence)


@dataclass(frozen=True)
class Share:
    """A recovered share and its interval.

    ``estimate = mean(point - tuned) / mean(reference - tuned)``: 0 means the
    point is no better than the tuned model, 1 that it is as good as the
    reference. ``lo``/``hi`` are None when the loss itself is not established
    (the interval of ``mean(reference - tuned)`` contains 0), since a share of
    nothing has no meaning; ``lost`` holds that interval.
    """

    estimate: float | None
    lo: float | None
    hi: float | None
    lost: PairedDiff
    n: int
    confidence: float

    def to_dict(self) -> dict:
        return {
            "estimate": self.estimate,
            "lo": self.lo,
            "hi": self.hi,
            "lost": self.lost.to_dict(),
            "n": self.n,
            "confidence": self.confidence,
        }


def recovered_share(
    tuned, point, reference, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> Share:
    """Share of the reference-to-tuned loss that ``point`` recovers, with a CI.

    Parameters
    ----------
    tuned, point, reference : array_like, shape (n,)
        Per-hand scores on the same hands, higher is better (pass the negated
        loss proxy to measure a loss). ``tuned`` is the degraded model (SFT
        end), ``reference`` the one it degraded from, ``point`` the candidate.
    confidence, n_resamples, seed
        As in :func:`paired_difference`; hands are resampled jointly for the
        three models.

    Returns
    -------
    Share
        The estimate is None when ``reference`` and ``tuned`` tie on these
        hands; the interval is None unless the loss's own interval excludes 0.
    """
    tuned, point = _paired_arrays(tuned, point)
    tuned, reference = _paired_arrays(tuned, reference)
    lost = paired_difference(tuned, reference, confidence=confidence, n_resamples=n_resamples, seed=seed)
    denominator = lost.estimate
    if denominator == 0:
        return Share(None, None, None, lost, tuned.size, confidence)
    estimate = float((point - tuned).mean() / denominator)
    if not (lost.lo > 0 or lost.hi < 0):
        return Share(estimate, None, None, lost, tuned.size, confidence)
    idx = _resample_indices(tuned.size, n_resamples, seed)
    gained = (point - tuned)[idx].mean(axis=1)
    lost_b = (reference - tuned)[idx].mean(axis=1)
    ok = lost_b != 0
    lo, hi = _percentile_interval(gained[ok] / lost_b[ok], confidence)
    return Share(estimate, lo, hi, lost, tuned.size, confidence)


def verdict(lo: float | None, hi: float | None, direction: int) -> Verdict:
    """The rule every finding is judged by (docs/design.md, "Evidence").

    Parameters
    ----------
    lo, hi : float or None
        The effect's interval, in the units where the paper's claim is
        ``direction * effect > 0``. None (no interval) is inconclusive.
    direction : {+1, -1}
        The sign the paper's claim predicts.

    Returns
    -------
    str
        ``"reproduced"`` if the interval excludes 0 on the predicted side,
        ``"contradicted"`` if it excludes 0 on the other side, else
        ``"inconclusive"``.
    """
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    if lo is None or hi is None:
        return "inconclusive"
    if lo > hi:
        raise ValueError(f"interval bounds out of order: lo={lo} > hi={hi}")
    if direction * lo > 0 and direction * hi > 0:
        return "reproduced"
    if direction * lo < 0 and direction * hi < 0:
        return "contradicted"
    return "inconclusive"


def hands_to_resolve(estimate: float, se: float, n: int, *, confidence: float = CONFIDENCE) -> int | None:
    """Hands a normal-approximation interval would need to exclude 0.

    ``n * (z * se / |estimate|)^2`` rounded up, with ``z`` the two-sided
    normal quantile of ``confidence``: the per-hand spread ``se * sqrt(n)``
    stays, the interval shrinks as ``1 / sqrt(n)``. None when the estimate is
    0 (no sample size decides a zero effect).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if se < 0:
        raise ValueError(f"se must be >= 0, got {se}")
    if estimate == 0 or not math.isfinite(estimate):
        return None
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    return max(n, math.ceil(n * (z * se / abs(estimate)) ** 2))
