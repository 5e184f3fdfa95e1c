"""Pool the findings tables of several seeds into one (docs/design.md, "Evidence").

The rule, for each measure (the same ``finding`` and ``measure`` text across
seeds), over the ``k`` seeds that measured it (an estimate that is not None):

- pooled estimate: the mean of the seed estimates;
- pooled interval: that mean +- the larger of two half-widths: the within-seed
  one, 1.96 * sqrt(sum_i se_i^2) / k, where se_i is the seed's standard error
  (its ``se`` when the row has one, else (hi - lo) / (2 * 1.96) from its 95%
  interval; the seeds are independent runs, so the variance of the mean of
  their hand noise is the sum of the variances over k^2), and the between-seed
  one, t(0.975, k - 1) * sd(estimates) / sqrt(k), Student's t over the seed
  estimates, which carries how much training runs differ (with 3 seeds
  t = 4.30: three seeds decide only effects much larger than their spread);
  no interval when a seed has neither;
- a measure only one seed has keeps that seed's own interval (nothing to pool);
- verdict: :func:`spindoctor.stats.verdict` on the pooled interval with the
  row's predicted sign; when that is inconclusive but every one of k >= 2
  seeds reached the same decisive verdict on its own interval, that verdict
  (under no effect each seed reproduces with probability <= 0.025, all k with
  probability <= 0.025^k: the per-seed tests combined, a test of its own); an inconclusive one says how many seeds of the same
  spread would resolve it (:func:`spindoctor.stats.hands_to_resolve` with
  seeds in place of hands);
- beside it: the seed-to-seed spread (min, max of the estimates), the per-seed
  verdicts ("3/3 reproduced") and how many seeds the row pools.
"""

from __future__ import annotations

import math

from spindoctor.stats import hands_to_resolve, verdict

Z = 1.96
RULE = ("Pooled over seeds: estimate = mean of the seed estimates; 95% interval = mean +- the larger of "
        "1.96 * sqrt(sum of the seed SE^2) / k (each seed's probe-hand noise; a seed's SE is its paired SE, or "
        "(hi - lo) / 3.92 from its interval) and t(0.975, k-1) * sd(seed estimates) / sqrt(k) (how much "
        "training seeds differ); a measure one seed has keeps that seed's interval; verdict by the same rule "
        "as each seed (the interval against 0, in the paper's direction), or, when that interval is "
        "inconclusive, the verdict every seed reached on its own if all k >= 2 agree (under no effect all k "
        "seeds reproduce with probability <= 0.025^k).")
KEYS = ("finding", "claim", "paper", "measure", "unit", "predicted")


def seed_se(row: dict) -> float | None:
    """A seed row's standard error: ``se``, else half its interval's width over 1.96; None without either."""
    if row.get("se") is not None:
        return float(row["se"])
    if row.get("lo") is not None and row.get("hi") is not None:
        return (float(row["hi"]) - float(row["lo"])) / (2 * Z)
    return None


def _seed_verdicts(rows: dict[int, dict], total: int) -> str:
    """``"2/3 reproduced, 1/3 inconclusive"`` over every seed (one without the row, or without an
    estimate, counts as not measured)."""
    counts: dict[str, int] = {}
    for row in rows.values():
        key = row["verdict"] if row.get("estimate") is not None else "not measured"
        counts[key] = counts.get(key, 0) + 1
    if total > len(rows):
        counts["not measured"] = counts.get("not measured", 0) + total - len(rows)
    order = ("reproduced", "contradicted", "inconclusive", "not measured")
    return ", ".join(f"{counts[v]}/{total} {v}" for v in order if v in counts)


def pooled_se(estimates: list[float], ses: list[float]) -> tuple[float, float]:
    """(standard error, 95% half-width) of the mean of k >= 2 seed estimates.

    The larger of the within-seed term ``sqrt(sum se_i^2) / k`` (normal, z = 1.96)
    and the between-seed term ``sd(estimates) / sqrt(k)`` (Student's t with k - 1
    degrees of freedom); the SE returned is the one whose half-width wins.
    """
    from scipy.stats import t as student_t

    k = len(estimates)
    within = math.sqrt(sum(x * x for x in ses)) / k
    mean = sum(estimates) / k
    between = math.sqrt(sum((e - mean) ** 2 for e in estimates) / (k - 1) / k)
    t = float(student_t.ppf(0.975, k - 1))
    return (within, Z * within) if Z * within >= t * between else (between, t * between)


def _pool_one(rows: dict[int, dict], total: int) -> dict:
    """The pooled row of one measure from {seed: row} (every seed's row, measured or not)."""
    first = next(iter(rows.values()))
    measured = {s: r for s, r in rows.items() if r.get("estimate") is not None}
    k = len(measured)
    out = {key: first.get(key) for key in KEYS}
    out.update(estimate=None, lo=None, hi=None, se=None, k=k, seeds=",".join(str(s) for s in measured),
               spread_min=None, spread_max=None, seed_verdicts=_seed_verdicts(rows, total),
               verdict="inconclusive", resolve=None, note="")
    if k == 0:
        out["resolve"] = "not measured in any seed"
        return out
    estimates = [float(r["estimate"]) for r in measured.values()]
    mean = sum(estimates) / k
    out.update(estimate=mean, spread_min=min(estimates), spread_max=max(estimates))
    ses = [seed_se(r) for r in measured.values()]
    if k == 1:
        only = next(iter(measured.values()))
        out.update(lo=only.get("lo"), hi=only.get("hi"), se=ses[0])
    elif all(se is not None for se in ses):
        se, half = pooled_se(estimates, ses)
        out.update(se=se, lo=mean - half, hi=mean + half)
    direction = 1 if str(first.get("predicted", "> 0")).strip().startswith(">") else -1
    out["verdict"] = verdict(out["lo"], out["hi"], direction)
    out["note"] = f"pooled over {k} of {total} seeds" + ("" if k == total else f" ({total - k} did not measure it)")
    agreed = {r.get("verdict") for r in measured.values()}
    if k >= 2 and len(agreed) == 1 and agreed <= {"reproduced", "contradicted"} and out["verdict"] == "inconclusive":
        # every seed's own interval excludes 0 on one side: under no effect that happens with
        # probability <= 0.025**k (independent seeds), a test of its own (docs/design.md, "Evidence")
        out["verdict"] = agreed.pop()
        out["note"] += f"; every seed's own interval agrees (p <= 0.025^{k} under no effect)"
    if out["verdict"] == "inconclusive" and out["se"] and mean:
        need = hands_to_resolve(mean, out["se"], k)
        out["resolve"] = f"about {need} seeds of this spread would resolve it" if need and need > k else None
    elif out["verdict"] == "inconclusive" and out["lo"] is None:
        out["resolve"] = "a seed's row has no interval"
    return out


def pool_findings(per_seed: dict[int, list[dict]]) -> list[dict]:
    """One pooled row per measure, in the order the measures first appear (seeds in ascending order).

    ``per_seed`` maps each seed to its findings rows
    (:func:`spindoctor.report.findings.findings_table`); no seeds give no rows.
    """
    groups: dict[tuple, dict[int, dict]] = {}
    for seed in sorted(per_seed):
        for row in per_seed[seed]:
            groups.setdefault((row["finding"], row["measure"]), {})[seed] = row
    return [_pool_one(rows, len(per_seed)) for rows in groups.values()]
