"""Paired statistics: golden values from independent computations, invariants, degenerate inputs."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spindoctor.stats import (
    hands_to_resolve,
    mcnemar_exact,
    paired_difference,
    recovered_share,
    verdict,
)


def mcnemar_oracle(b: int, c: int) -> float:
    """Exact two-sided McNemar in rational arithmetic: sum of Binomial(m, 1/2)
    probabilities of outcomes at least as far from m/2 as the observed one."""
    m = b + c
    if m == 0:
        return 1.0
    far = abs(Fraction(b) - Fraction(m, 2))
    total = sum(Fraction(math.comb(m, k), 2**m) for k in range(m + 1) if abs(Fraction(k) - Fraction(m, 2)) >= far)
    return float(min(total, Fraction(1)))


@given(st.integers(0, 60), st.integers(0, 60))
@settings(max_examples=200, deadline=None)
def test_mcnemar_matches_rational_oracle(b, c):
    assert mcnemar_exact(b, c) == pytest.approx(mcnemar_oracle(b, c), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    "b,c,expected",
    [(0, 0, 1.0), (5, 5, 1.0), (0, 6, 0.03125), (10, 0, 2 / 1024)],
    ids=["no-discordant", "balanced", "six-one-sided", "ten-one-sided"],
)
def test_mcnemar_golden(b, c, expected):
    assert mcnemar_exact(b, c) == pytest.approx(expected)


def test_paired_difference_binary_counts_and_sign():
    a = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    b = np.array([1, 0, 1, 1, 1, 1, 0, 0])
    res = paired_difference(a, b, n_resamples=2000)
    assert res.estimate == pytest.approx((b - a).mean())
    assert res.discordant == (1, 3)
    assert res.p_value == pytest.approx(mcnemar_oracle(1, 3))
    assert res.lo <= res.estimate <= res.hi
    assert res.se == pytest.approx(np.std(b - a, ddof=1) / math.sqrt(8))


def test_paired_difference_identical_models_is_exactly_zero():
    a = np.random.default_rng(0).random(50)
    res = paired_difference(a, a)
    assert (res.estimate, res.lo, res.hi, res.se) == (0.0, 0.0, 0.0, 0.0)
    assert res.p_value is None  # not 0/1 data


def test_paired_difference_is_seeded_and_antisymmetric():
    rng = np.random.default_rng(1)
    a, b = rng.random(200), rng.random(200)
    one, two = paired_difference(a, b, seed=3), paired_difference(a, b, seed=3)
    assert one == two
    flipped = paired_difference(b, a, seed=3)
    assert flipped.estimate == pytest.approx(-one.estimate)
    assert flipped.lo == pytest.approx(-one.hi) and flipped.hi == pytest.approx(-one.lo)


def test_paired_interval_is_tighter_than_unpaired_for_correlated_models():
    rng = np.random.default_rng(2)
    ability = rng.random(600)  # per-hand difficulty shared by both models
    a = (ability < 0.30).astype(float)
    b = (ability < 0.33).astype(float)  # b solves a superset of a's hands
    res = paired_difference(a, b)
    unpaired_half_width = 1.96 * math.sqrt(a.mean() * (1 - a.mean()) / 600 + b.mean() * (1 - b.mean()) / 600)
    assert (res.hi - res.lo) / 2 < unpaired_half_width / 2
    assert res.lo > 0  # a 3-point gain on 600 hands is resolved when paired
    assert res.p_value < 0.01


def test_bootstrap_interval_covers_the_true_mean_difference():
    """Coverage over repeated experiments is near the nominal 95%."""
    rng = np.random.default_rng(4)
    hits = 0
    for trial in range(200):
        a = rng.normal(0.0, 1.0, 80)
        b = a + rng.normal(0.2, 0.5, 80)
        res = paired_difference(a, b, n_resamples=1000, seed=trial)
        hits += res.lo <= 0.2 <= res.hi
    assert 0.88 <= hits / 200 <= 0.99


@pytest.mark.parametrize(
    "a,b,match",
    [
        ([], [], "empty"),
        ([1, 0], [1], "same length"),
        ([[1, 0]], [[1, 0]], "1-D"),
        ([1.0, float("nan")], [1.0, 0.0], "NaN"),
    ],
    ids=["empty", "length-mismatch", "two-dim", "nan"],
)
def test_paired_difference_rejects_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_difference(a, b)


def test_single_hand_is_a_point_interval():
    res = paired_difference([0], [1])
    assert (res.estimate, res.lo, res.hi, res.se, res.n) == (1.0, 1.0, 1.0, 0.0, 1)


def test_recovered_share_endpoints():
    rng = np.random.default_rng(5)
    reference = (rng.random(400) < 0.5).astype(float)
    tuned = reference * (rng.random(400) < 0.5)  # loses about half of the reference's hands
    none = recovered_share(tuned, tuned, reference)
    full = recovered_share(tuned, reference, reference)
    assert (none.estimate, none.lo, none.hi) == (0.0, 0.0, 0.0)
    assert (full.estimate, full.lo, full.hi) == (1.0, 1.0, 1.0)
    half = np.where(np.arange(400) % 2 == 0, reference, tuned)
    res = recovered_share(tuned, half, reference)
    assert res.lo < res.estimate < res.hi and 0.3 < res.estimate < 0.7


def test_recovered_share_of_no_loss_has_no_interval():
    rng = np.random.default_rng(6)
    x = (rng.random(100) < 0.4).astype(float)
    tied = recovered_share(x, 1 - x, x)
    assert tied.estimate is None and tied.lo is None
    noisy_ref = x.copy()
    noisy_ref[:2] = 1 - noisy_ref[:2]  # a loss of at most 2 hands in 100: not established
    res = recovered_share(x, x, noisy_ref)
    assert res.lo is None and res.hi is None


@pytest.mark.parametrize(
    "lo,hi,direction,expected",
    [
        (0.1, 0.3, 1, "reproduced"),
        (-0.3, -0.1, 1, "contradicted"),
        (-0.3, -0.1, -1, "reproduced"),
        (-0.1, 0.2, 1, "inconclusive"),
        (0.0, 0.2, 1, "inconclusive"),
        (None, None, 1, "inconclusive"),
    ],
    ids=["above-zero", "below-zero", "predicted-drop", "straddles", "touches-zero", "no-interval"],
)
def test_verdict_rule(lo, hi, direction, expected):
    assert verdict(lo, hi, direction) == expected


def test_verdict_rejects_bad_direction_and_order():
    with pytest.raises(ValueError, match="direction"):
        verdict(0.1, 0.2, 0)
    with pytest.raises(ValueError, match="out of order"):
        verdict(0.3, 0.2, 1)


def test_hands_to_resolve():
    # half-width 1.96 * se must fall below |estimate|: se scales as 1/sqrt(n)
    need = hands_to_resolve(0.01, 0.01, 500)
    assert need == math.ceil(500 * 1.959963984540054**2)
    assert hands_to_resolve(0.1, 0.01, 500) == 500  # already resolved
    assert hands_to_resolve(0.0, 0.01, 500) is None
