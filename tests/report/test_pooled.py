"""Pooling findings over seeds (docs/design.md, "Evidence"): golden values, invariants, degenerate inputs."""

from __future__ import annotations

import math

import pytest

from spindoctor.report.findings import findings_table
from spindoctor.report.pooled import pool_findings, seed_se


def row(measure="m", est=0.1, lo=None, hi=None, se=None, verdict="inconclusive", predicted="> 0", finding=1):
    return {"finding": finding, "claim": "c", "paper": "p", "measure": measure, "estimate": est, "lo": lo, "hi": hi,
            "se": se, "unit": "fraction", "predicted": predicted, "verdict": verdict, "resolve": None, "note": ""}


def test_golden_values_by_hand():
    # seed 0: se 0.05; seed 1: se 0.05; seed 2: only an interval [0.1, 0.5] -> se = 0.4 / 3.92
    per_seed = {0: [row(est=0.1, lo=0.0, hi=0.2, se=0.05, verdict="inconclusive")],
                1: [row(est=0.2, lo=0.1, hi=0.3, se=0.05, verdict="reproduced")],
                2: [row(est=0.3, lo=0.1, hi=0.5, verdict="reproduced")]}
    (p,) = pool_findings(per_seed)
    se2 = 0.4 / 3.92
    within = math.sqrt(0.05**2 + 0.05**2 + se2**2) / 3  # 0.041382: half-width 1.96 * 0.041382 = 0.081109
    between = 0.1 / math.sqrt(3)  # sd of 0.1, 0.2, 0.3 is 0.1: half-width t(0.975, 2) * 0.057735 = 0.248414
    assert within == pytest.approx(0.041382, abs=1e-6)
    assert p["estimate"] == pytest.approx(0.2)
    assert p["se"] == pytest.approx(between)  # the seeds disagree more than their hands are noisy
    assert p["lo"] == pytest.approx(0.2 - 4.302653 * between, abs=1e-6) and p["lo"] == pytest.approx(-0.048414, abs=1e-6)
    assert p["hi"] == pytest.approx(0.448414, abs=1e-6)
    assert p["verdict"] == "inconclusive" and p["k"] == 3 and p["seeds"] == "0,1,2"
    assert (p["spread_min"], p["spread_max"]) == (0.1, 0.3)
    assert p["seed_verdicts"] == "2/3 reproduced, 1/3 inconclusive"
    assert p["note"] == "pooled over 3 of 3 seeds"


def test_agreeing_seeds_pool_to_the_within_seed_interval():
    per_seed = {s: [row(est=0.2 + 0.001 * s, se=0.05)] for s in range(3)}
    (p,) = pool_findings(per_seed)
    assert p["se"] == pytest.approx(math.sqrt(3 * 0.05**2) / 3)
    assert p["lo"] == pytest.approx(0.201 - 1.96 * p["se"]) and p["verdict"] == "reproduced"


def test_seed_se_prefers_se_then_interval():
    assert seed_se(row(se=0.03, lo=0.0, hi=1.0)) == 0.03
    assert seed_se(row(lo=-0.196, hi=0.196)) == pytest.approx(0.1)
    assert seed_se(row()) is None


def test_one_seed_pools_to_itself():
    rows = [row("a", 0.1, 0.02, 0.2, 0.045, "reproduced"), row("b", -0.05, -0.2, 0.1, None, "inconclusive")]
    pooled = pool_findings({7: rows})
    for p, r in zip(pooled, rows, strict=True):
        assert (p["estimate"], p["lo"], p["hi"], p["verdict"]) == (r["estimate"], r["lo"], r["hi"], r["verdict"])
        assert p["k"] == 1 and p["seed_verdicts"] == f"1/1 {r['verdict']}"


def test_identical_seeds_keep_the_estimate_and_narrow_the_interval():
    one = row(est=0.02, lo=-0.04, hi=0.08, se=0.03)
    (single,) = pool_findings({0: [one]})
    (triple,) = pool_findings({0: [one], 1: [dict(one)], 2: [dict(one)]})
    assert triple["estimate"] == pytest.approx(single["estimate"])
    assert triple["hi"] - triple["lo"] < single["hi"] - single["lo"]
    assert triple["se"] == pytest.approx(0.03 / math.sqrt(3))
    assert triple["verdict"] == "inconclusive" and triple["resolve"] == "about 9 seeds of this spread would resolve it"


def test_the_predicted_direction_decides_the_verdict():
    low = {s: [row(est=-0.1, se=0.01, predicted="< 0"), row("up", est=-0.1, se=0.01, predicted="> 0")] for s in (0, 1)}
    down, up = pool_findings(low)
    assert down["verdict"] == "reproduced" and up["verdict"] == "contradicted"


def test_degenerate_inputs():
    assert pool_findings({}) == []
    assert pool_findings({0: [], 1: []}) == []
    (p,) = pool_findings({0: [], 1: [row(est=0.2, se=0.05)]})  # a seed with no rows: the row pools over one seed
    assert p["k"] == 1 and p["seed_verdicts"] == "1/2 inconclusive, 1/2 not measured"
    assert p["note"] == "pooled over 1 of 2 seeds (1 did not measure it)"
    (p,) = pool_findings({0: [row(est=None)], 1: [row(est=None)]})
    assert p["estimate"] is None and p["verdict"] == "inconclusive" and p["resolve"] == "not measured in any seed"
    (p,) = pool_findings({0: [row(est=0.2, se=0.05)], 1: [row(est=0.4)]})  # a seed without any interval
    assert p["estimate"] == pytest.approx(0.3) and p["lo"] is None and p["verdict"] == "inconclusive"


def test_rows_missing_in_some_seeds_pool_over_the_others_in_first_seen_order():
    per_seed = {2: [row("b", 0.3, se=0.1)], 0: [row("a", 0.1, se=0.1), row("b", 0.1, se=0.1)]}
    a, b = pool_findings(per_seed)
    assert (a["measure"], a["k"], a["seeds"]) == ("a", 1, "0")
    assert (b["measure"], b["k"], b["seeds"]) == ("b", 2, "0,2") and b["estimate"] == pytest.approx(0.2)


def test_real_findings_rows_pool():
    from .test_findings import full_data

    rows = findings_table(full_data())
    pooled = pool_findings({0: rows, 1: rows})
    assert [p["measure"] for p in pooled] == [r["measure"] for r in rows]
    assert all(p["verdict"] in ("reproduced", "contradicted", "inconclusive") for p in pooled)
    toy = next(p for p in pooled if p["finding"] == 6)
    assert toy["verdict"] == "reproduced" and toy["seed_verdicts"] == "2/2 reproduced"


def test_a_row_without_an_estimate_counts_as_not_measured():
    (p,) = pool_findings({0: [row(est=None)], 1: [row(est=0.3, se=0.1, verdict="reproduced")], 2: []})
    assert p["seed_verdicts"] == "1/3 reproduced, 2/3 not measured" and p["k"] == 1


def test_seeds_that_each_decide_alike_decide_the_pool():
    """Two seeds each reproduce on their own narrow intervals but differ in size: the t interval over two
    seeds is wide, yet all seeds agreeing is itself a test (p <= 0.025^2 under no effect)."""
    per_seed = {0: [row(est=0.108, lo=0.095, hi=0.121, se=0.0065, verdict="reproduced")],
                1: [row(est=0.147, lo=0.133, hi=0.162, se=0.0075, verdict="reproduced")]}
    (p,) = pool_findings(per_seed)
    assert p["lo"] < 0 < p["hi"]  # t(0.975, 1) = 12.7 times the between-seed SE
    assert p["verdict"] == "reproduced" and "every seed's own interval agrees" in p["note"]
    mixed = {0: per_seed[0], 1: [row(est=0.01, lo=-0.01, hi=0.03, se=0.01, verdict="inconclusive")]}
    assert pool_findings(mixed)[0]["verdict"] == "inconclusive"
