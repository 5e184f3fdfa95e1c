"""Selection when OOD accuracy sits at the floor: the flatness test and the loss-proxy peak.

A model that scores a few percent OOD all through SFT (SmolLM2-135M on
GeneralPoints) gives an accuracy curve that is noise: its "peak" is whichever
probe was luckiest. Step 6 of :data:`spindoctor.training.select.RULE` tests
for that on the per-hand records of the OOD probe rows and, when the curve is
flat, places the peak on the OOD loss proxy instead (docs/design.md,
"Checkpoint selection"). Pure functions on probe rows; the paired statistics
are :func:`spindoctor.stats.paired_difference`'s.
"""

from __future__ import annotations

import math

from spindoctor.probes.compare import per_hand_arrays
from spindoctor.stats import paired_difference

ALPHA = 0.05  # two-sided level of each McNemar test of the flatness check


def _digest(row: dict) -> str | None:
    return (row.get("per_hand") or {}).get("digest")


def accuracy_flat(rows: dict[int, dict], alpha: float = ALPHA) -> dict:
    """Is the OOD accuracy curve flat within its noise?

    Flat means: no probe step's per-hand OOD correctness differs from the first
    step's, nor from the best step's (highest OOD accuracy, earliest on ties),
    by the exact McNemar test at level ``alpha`` (two-sided), each pair tested
    alone (no multiplicity correction: with many steps this calls a curve
    "moving" more readily, which keeps accuracy as the signal).

    Parameters
    ----------
    rows : OOD probe rows (``metrics.jsonl``) by step, each with ``acc`` and ``per_hand``
    alpha : level of each test

    Returns
    -------
    dict
        ``flat`` (True, False, or None when the test cannot run: fewer than two
        steps, a row without per-hand correctness, or rows of different hands),
        ``first_step``, ``best_step``, ``tests`` (pairs tested), ``significant``
        (``[{"step", "vs", "acc_diff", "p_value"}]``, the pairs under ``alpha``),
        ``alpha`` and ``detail`` (one sentence).
    """
    steps = sorted(rows)
    out: dict = {"flat": None, "alpha": alpha, "tests": 0, "significant": []}
    if len(steps) < 2:
        return out | {"detail": "fewer than two OOD probes"}
    if any(not (rows[s].get("per_hand") or {}).get("correct") for s in steps):
        return out | {"detail": "OOD probe rows without per-hand correctness (written before per-hand records)"}
    if len({_digest(rows[s]) for s in steps}) != 1:
        return out | {"detail": "OOD probe rows of different hands (probe settings changed during the run)"}
    first = steps[0]
    best = max(steps, key=lambda s: (rows[s]["acc"], -s))
    out.update(first_step=first, best_step=best)
    correct = {s: per_hand_arrays(rows[s]) for s in steps}
    for ref in dict.fromkeys((first, best)):
        for s in steps:
            if s == ref or (ref == best and s == first):  # first vs best is tested once
                continue
            diff = paired_difference(correct[ref], correct[s])
            out["tests"] += 1
            if diff.p_value is not None and diff.p_value < alpha:
                out["significant"].append({"step": s, "vs": ref, "acc_diff": diff.estimate, "p_value": diff.p_value})
    out["flat"] = not out["significant"]
    if out["flat"]:
        refs = (f"step {first} (first and best accuracy)" if best == first
                else f"step {first} (first) or step {best} (best accuracy)")
        out["detail"] = f"no OOD probe differs from {refs} by McNemar's exact test at {alpha:g} ({out['tests']} tests)"
    else:
        top = min(out["significant"], key=lambda t: t["p_value"])
        out["detail"] = (f"step {top['step']} differs from step {top['vs']} by {top['acc_diff'] * 100:+.1f} points "
                         f"(McNemar p = {top['p_value']:.2g}; {len(out['significant'])} of {out['tests']} tests "
                         f"under {alpha:g})")
    return out


def curve_shape(rise: float, decline: float, z: float) -> str:
    """The selection rule's shape words (docs/design.md, "Checkpoint selection"): "peak then
    decline" when the peak stands ``z`` SE above both ends, "decline" or "rise" when above one, else "flat"."""
    if rise >= z and decline >= z:
        return "peak then decline"
    if decline >= z:
        return "decline"
    return "rise" if rise >= z else "flat"


def _paired_z(before: dict, after: dict) -> float:
    """Mean per-hand loss ``before - after`` over its paired SE (inf when the SE is 0 and they differ)."""
    diff = paired_difference(per_hand_arrays(after, "loss"), per_hand_arrays(before, "loss"))
    if diff.se == 0:
        return 0.0 if diff.estimate == 0 else math.copysign(math.inf, diff.estimate)
    return diff.estimate / diff.se


def loss_peak(rows: dict[int, dict], z: float = 2.0) -> dict | None:
    """The OOD-loss peak: the probe step with the lowest OOD loss proxy (earliest on ties).

    Parameters
    ----------
    rows : OOD probe rows by step, each with ``loss`` and per-hand losses
    z : paired standard errors for the rise and the decline

    Returns
    -------
    dict or None
        ``step``, ``loss``, ``rise_z`` (mean per-hand loss of the first step minus the
        peak's, over its paired SE), ``decline_z`` (the last step's minus the peak's)
        and ``shape`` ("peak then decline", "decline", "rise" or "flat", as for
        accuracy); None when a row has no loss or no per-hand losses.
    """
    steps = sorted(rows)
    if not steps or any(rows[s].get("loss") is None for s in steps):
        return None
    try:
        for s in steps:
            per_hand_arrays(rows[s], "loss")
    except ValueError:
        return None
    peak = min(steps, key=lambda s: (rows[s]["loss"], s))
    rise, decline = _paired_z(rows[steps[0]], rows[peak]), _paired_z(rows[steps[-1]], rows[peak])
    shape = curve_shape(rise, decline, z)
    return {"step": peak, "loss": rows[peak]["loss"], "rise_z": rise, "decline_z": decline, "shape": shape}
