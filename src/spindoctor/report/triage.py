"""Triage: which row of the operator's playbook (docs/design.md, "What it does") this run's numbers point to.

Every sentence is built from numbers measured in this run; where a number is
missing the corresponding check says so instead of guessing. A difference
counts as real when it exceeds ``Z`` combined standard errors.
"""

from __future__ import annotations

import math

Z = 2.0


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _diff_z(a: dict, b: dict, split: str) -> float | None:
    pa, pb = a.get(f"{split}_acc"), b.get(f"{split}_acc")
    sa, sb = a.get(f"{split}_acc_se") or 0.0, b.get(f"{split}_acc_se") or 0.0
    if pa is None or pb is None:
        return None
    se = math.sqrt(sa * sa + sb * sb)
    return (pa - pb) / se if se > 0 else (math.inf if pa != pb else 0.0)


def _row(fig1: list[dict], prefix: str) -> dict | None:
    return next((r for r in fig1 if r["model"].startswith(prefix)), None)


def recoverability_rows(data: dict) -> list[dict]:
    """Per RL start: SFT step, ID/OOD before (SFT checkpoint) and after RL."""
    sel, sft, out = data.get("selection") or {}, data.get("sft") or [], []
    for start, points in (data.get("rl") or {}).items():
        step = int(start.removeprefix("step-")) if start.startswith("step-") else (sel.get(start) or {}).get("step")
        if step is None or not points:
            continue
        before = next((p for p in sft if p["step"] == step), None)
        if before is None:
            continue
        after = points[-1]
        out.append({"start": start, "sft_step": step, "rl_steps": after["step"],
                    "id_before": before.get("id_acc"), "id_after": after.get("id_acc"),
                    "ood_before": before.get("ood_acc"), "ood_after": after.get("ood_acc"),
                    "ood_after_se": after.get("ood_acc_se"), "ood_before_se": before.get("ood_acc_se"),
                    "id_loss_before": before.get("id_loss"), "id_loss_after": after.get("id_loss"),
                    "ood_loss_before": before.get("ood_loss"), "ood_loss_after": after.get("ood_loss")})
    return sorted(out, key=lambda r: r["sft_step"])


def _sweep_best(sweep: dict | None, key: str = "ood_recovered") -> dict | None:
    rows = [r for r in (sweep or {}).get("rows", []) if r.get("kind") != "baseline" and r.get(key) is not None]
    return max(rows, key=lambda r: r[key]) if rows else None


def _ood_decline_row(peak: dict, end: dict, selection: dict) -> dict:
    """Playbook row 1. The test is selection.json's (OOD successes pooled over
    ``window`` neighbouring probes, the rule ``spindoctor select`` states) when
    present, else the single peak and end probes; both numbers are shown."""
    ood_z, id_z = _diff_z(peak, end, "ood"), _diff_z(end, peak, "id")
    pooled_z = selection.get("decline_z")
    test_z = pooled_z if pooled_z is not None else ood_z
    applies = test_z is not None and test_z >= Z and (id_z or 0) > 0
    pooled = (f"; pooled over {selection.get('window')} probes, the decline is {pooled_z:.1f} SE "
              f"(select: {selection.get('shape')})" if pooled_z is not None else "")
    return {
        "symptom": "ID up, OOD down",
        "applies": applies,
        "evidence": (f"OOD peaked at step {peak['step']} at {_pct(peak['ood_acc'])} and ended at "
                     f"{_pct(end['ood_acc'])} ({ood_z:+.1f} SE between the single probes{pooled}) "
                     f"while ID went {_pct(peak['id_acc'])} -> {_pct(end['id_acc'])}."),
        "action": (f"Stop SFT or branch at step {peak['step']} (the OOD peak)." if applies else
                   "No OOD decline larger than 2 SE: no need to stop early on this evidence."),
    }


def triage(data: dict) -> list[dict]:
    """A list of {symptom, evidence, action, applies} in playbook order."""
    fig1 = data.get("figure1") or []
    peak, end = _row(fig1, "SFT, OOD peak"), _row(fig1, "SFT, end")
    out = [_ood_decline_row(peak, end, data.get("selection") or {})] if peak and end else []
    out += _restoration_rows(data.get("sweeps", {}))
    for row in (_arena_row(data.get("arena")), _rl_row(data), _budget_row(data.get("sft") or [], peak), _reliability_row(data.get("selection"))):
        if row:
            out.append(row)
    return out


def _restoration_rows(sweeps: dict) -> list[dict]:
    """"OOD lost after full SFT": no significant loss at the sweep's probe size, or what restoring wins back."""
    ranks, layers = sweeps.get("ranks"), sweeps.get("layers")
    best_rank, best_layer = _sweep_best(ranks), _sweep_best(layers)
    base_rows = {r["point"]: r for r in (layers or ranks or {}).get("rows", []) if r.get("kind") == "baseline"}
    lost_z = (_diff_z(base_rows["reference"], base_rows["tuned"], "ood")
              if {"reference", "tuned"} <= base_rows.keys() else None)
    if lost_z is not None and lost_z < Z:
        ref, tuned = base_rows["reference"], base_rows["tuned"]
        return [{
            "symptom": "OOD lost after full SFT",
            "applies": False,
            "evidence": (f"At the sweep's probe size the restoration reference scores OOD {_pct(ref['ood_acc'])} and the "
                         f"SFT end {_pct(tuned['ood_acc'])} ({lost_z:+.1f} SE): no significant OOD loss, so recovered "
                         "shares would be noise."),
            "action": "No restoration needed on this evidence; the sweep tables still show each point's ID cost.",
        }]
    if not (best_rank or best_layer):
        return []
    parts = []
    if best_rank:
        parts.append(f"restoring {best_rank['point']} directions of every layer recovers "
                     f"{100 * best_rank['ood_recovered']:.0f}% of the lost OOD accuracy{_share_ci(best_rank, 'acc')} "
                     f"(OOD {_pct(best_rank['ood_acc'])}, ID {_pct(best_rank['id_acc'])})"
                     f"{_loss_share_text(best_rank)}")
    if best_layer:
        parts.append(f"the best layer block ({best_layer['point']}) recovers "
                     f"{100 * best_layer['ood_recovered']:.0f}%{_share_ci(best_layer, 'acc')} "
                     f"(ID {_pct(best_layer['id_acc'])}){_loss_share_text(best_layer)}")
    paired = [b for b in (best_rank, best_layer) if b and _share(b, "acc") is not None]
    if paired:  # paired evidence: a share helps when its interval (accuracy or loss proxy) lies above 0
        helps = any((_share(b, what) or {}).get("lo") is not None and _share(b, what)["lo"] > 0
                    for b in paired for what in ("acc", "loss"))
    else:
        helps = any(b and b["ood_recovered"] > 0 for b in (best_rank, best_layer))
    return [{
        "symptom": "OOD lost after full SFT",
        "applies": helps,
        "evidence": "; ".join(parts) + ".",
        "action": ("Try that restoration before RL; check the ID cost in the sweep table." if helps else
                   "Directional restoration did not win back OOD accuracy here; do not rely on it."),
    }]


def _arena_row(arena: dict | None) -> dict | None:
    """"cheapest fix": the arena's best point (most OOD within the ID tolerance), its paired numbers, and
    whether a simple interpolation does as well as directional restoration."""
    if not arena or not arena.get("rows"):
        return None
    tol = (arena.get("config") or {}).get("id_tolerance", 0.02)
    best = next((r for r in arena["rows"] if r.get("best")), None)
    if best is None:
        return {"symptom": "cheapest fix", "applies": False,
                "evidence": f"No arena point stays within an ID cost of {_pct(tol)} of the SFT end.",
                "action": "Every cheap fix here trades ID for OOD; see the arena chart for the trade-off."}
    rec = best.get("ood_acc_recovered_est")
    lo = best.get("ood_acc_recovered_lo")
    gain_lo = best.get("ood_acc_vs_end_lo")
    helps = gain_lo is not None and gain_lo > 0
    rec_text = "" if rec is None else (f", {100 * rec:.0f}% of the lost OOD accuracy"
                                       + ("" if lo is None else f" [95% CI {100 * lo:.0f}% to {100 * best['ood_acc_recovered_hi']:.0f}%]"))
    simple = (arena.get("simple_vs_restore") or {}).get("sentence")
    return {
        "symptom": "cheapest fix",
        "applies": helps,
        "evidence": (f"Within an ID cost of {_pct(tol)}, the arena's best point is {best['label']}: OOD "
                     f"{_pct(best.get('ood_acc'))}, ID {_pct(best.get('id_acc'))}, ID cost "
                     f"{100 * (best.get('id_cost_est') or 0):+.1f} pp{rec_text}; made in {best.get('seconds', 0):.1f} s."
                     + (f" {simple[0].upper() + simple[1:]}." if simple else "")),
        "action": (f"Apply {best['label']} (`spindoctor arena ... --write-best`)." if helps else
                   "No point within the ID tolerance raises OOD significantly; accept an ID cost (see the chart) "
                   "or go back to the OOD-peak checkpoint."),
    }


def _share(row: dict, what: str) -> dict | None:
    """A sweep point's paired recovered share of lost OOD ``acc`` or ``loss`` (None without paired data)."""
    return (((row.get("paired") or {}).get("ood") or {}).get("recovered") or {}).get(what)


def _share_ci(row: dict, what: str) -> str:
    share = _share(row, what)
    if not share or share.get("lo") is None:
        return ""
    return f" [95% CI {100 * share['lo']:.0f}% to {100 * share['hi']:.0f}%, paired]"


def _loss_share_text(row: dict) -> str:
    share = _share(row, "loss")
    if not share or share.get("estimate") is None:
        return ""
    return f", and {100 * share['estimate']:.0f}% of the lost OOD loss proxy{_share_ci(row, 'loss')}"


def _rl_ood(data: dict, start: str) -> dict:
    """The paired OOD change of the RL run from ``start`` (its done.json), or {}."""
    return ((((data.get("rl_done") or {}).get(start) or {}).get("paired") or {}).get("ood")) or {}


def heal_window(data: dict) -> dict:
    """Which RL starts healed OOD significantly: their paired OOD accuracy interval (done.json) lies above 0,
    or their OOD loss-proxy interval below 0; starts in SFT-step order (the recoverability map's window)."""
    rows = recoverability_rows(data)
    healed = {"acc": [], "loss": []}
    for r in rows:
        paired = _rl_ood(data, r["start"])
        if (paired.get("acc") or {}).get("lo") is not None and paired["acc"]["lo"] > 0:
            healed["acc"].append(r["sft_step"])
        if (paired.get("loss") or {}).get("hi") is not None and paired["loss"]["hi"] < 0:
            healed["loss"].append(r["sft_step"])
    return {"starts": [r["sft_step"] for r in rows], **healed}


def _heal_text(data: dict) -> str:
    window = heal_window(data)
    if not window["starts"]:
        return ""
    def where(steps: list[int]) -> str:
        return f"from SFT steps {', '.join(map(str, steps))}" if steps else "from no start"

    return (f" Heal window over {len(window['starts'])} starts (SFT steps {', '.join(map(str, window['starts']))}): "
            f"OOD accuracy rose significantly {where(window['acc'])}; the OOD loss proxy fell significantly "
            f"{where(window['loss'])}.")


def _paired_rl_text(data: dict, start: str) -> str:
    """", paired 95% CI [lo, hi]" of an RL run's OOD accuracy change (done.json), or ""."""
    acc = _rl_ood(data, start).get("acc")
    if not acc or acc.get("lo") is None:
        return ""
    return f", paired 95% CI [{100 * acc['lo']:+.1f}, {100 * acc['hi']:+.1f}] pp"


def _rl_row(data: dict) -> dict | None:
    """"RL restores too little": does an earlier RL start end > Z SE higher in OOD than RL from the end?"""
    rec = recoverability_rows(data)
    if not rec:
        return None
    gains = {r["start"]: (r["ood_after"] or 0) - (r["ood_before"] or 0) for r in rec}
    best = max(rec, key=lambda r: r["ood_after"] or 0)
    evidence = "; ".join(f"RL from {r['start']} (SFT step {r['sft_step']}): OOD {_pct(r['ood_before'])} -> "
                         f"{_pct(r['ood_after'])} ({100 * gains[r['start']]:+.1f} pp"
                         f"{_paired_rl_text(data, r['start'])})" for r in rec)
    end_rec = next((r for r in rec if r["start"] == "end"), None)
    margin = None
    if end_rec is not None and best["start"] != "end":
        se = math.hypot(best.get("ood_after_se") or 0.0, end_rec.get("ood_after_se") or 0.0)
        margin = ((best["ood_after"] or 0) - (end_rec["ood_after"] or 0)) / se if se > 0 else None
    earlier_better = margin is not None and margin >= Z
    return {
        "symptom": "RL restores too little",
        "applies": earlier_better,
        "evidence": evidence + "." + _heal_text(data),
        "action": (f"Start RL from the {best['start']} checkpoint (SFT step {best['sft_step']}): it ends "
                   f"{margin:.1f} SE higher in OOD than RL from the end." if earlier_better else
                   "No RL start ends more than 2 SE higher in OOD than RL from the end checkpoint: "
                   "on this evidence the start does not matter; run longer RL or more probe hands to tell."),
    }


def _budget_row(sft: list[dict], peak: dict | None) -> dict | None:
    """"tight budget": where the OOD loss proxy bottomed out, beside the OOD accuracy peak."""
    losses = [(p["step"], p["ood_loss"]) for p in sft if p.get("ood_loss") is not None]
    if not (losses and peak):
        return None
    low_step, low = min(losses, key=lambda t: t[1])
    return {
        "symptom": "tight budget",
        "applies": True,
        "evidence": (f"The OOD loss proxy was lowest at step {low_step} ({low:.3f} nats/token); the OOD "
                     f"accuracy peak was at step {peak['step']}."),
        "action": "Use the OOD loss proxy (no generation needed) to place checkpoints before paying for "
                  "rollouts; shallow or low-rank restoration is the cheapest triage.",
    }


def _reliability_row(sel: dict | None) -> dict | None:
    """"reliability needed": the three checkpoints select kept."""
    if not sel:
        return None
    return {
        "symptom": "reliability needed",
        "applies": True,
        "evidence": f"Checkpoints kept: OOD peak (step {sel['peak']['step']}), middle (step "
                    f"{sel['middle']['step']}), end (step {sel['end']['step']}); curve shape: {sel.get('shape')}; "
                    f"selected on OOD {'the loss proxy' if sel.get('signal') == 'loss' else 'accuracy'}"
                    f"{': ' + sel['why'] if sel.get('why') else ''}.",
        "action": "Keep all three; track ID and OOD through RL (the metrics.jsonl of every rl/ run).",
    }
