"""Triage rows from synthetic run data: each row's verdict follows the numbers it quotes."""

from __future__ import annotations

import pytest

from spindoctor.report.triage import triage


def fig1(peak_ood, end_ood, peak_id=0.10, end_id=0.30, se=0.01):
    return [
        {"model": "SFT, OOD peak", "step": 35, "id_acc": peak_id, "id_acc_se": se, "ood_acc": peak_ood, "ood_acc_se": se},
        {"model": "SFT, end", "step": 400, "id_acc": end_id, "id_acc_se": se, "ood_acc": end_ood, "ood_acc_se": se},
    ]


def selected(shape, decline_z):
    return {"window": 3, "shape": shape, "decline_z": decline_z,
            **{name: {"step": step} for name, step in (("peak", 35), ("middle", 200), ("end", 400))}}


@pytest.mark.parametrize(
    "peak_ood, end_ood, selection, applies",
    [
        (0.052, 0.034, selected("peak then decline", 3.0), True),
        (0.052, 0.034, selected("rise", 1.2), False),
        (0.080, 0.030, None, True),
        (0.052, 0.034, None, False),
    ],
    ids=["pooled-significant", "pooled-not-significant", "single-probes-significant", "single-probes-noise"],
)
def test_ood_decline_row_uses_the_selection_rule_when_present(peak_ood, end_ood, selection, applies):
    row = triage({"figure1": fig1(peak_ood, end_ood), "selection": selection})[0]
    assert row["symptom"] == "ID up, OOD down"
    assert row["applies"] is applies
    assert ("pooled over 3 probes" in row["evidence"]) == (selection is not None)
    assert ("Stop SFT" in row["action"]) is applies


def test_ood_decline_needs_id_to_rise():
    row = triage({"figure1": fig1(0.08, 0.03, peak_id=0.30, end_id=0.10), "selection": None})[0]
    assert row["applies"] is False


def test_restoration_row_reads_the_paired_shares():
    """With paired evidence, a point helps when a recovered-share interval (accuracy or loss) lies above 0."""
    from spindoctor.report.triage import triage

    def point(name, acc_share, loss_share):
        return {"point": name, "kind": "ranks", "ood_recovered": acc_share["estimate"], "ood_acc": 0.05, "id_acc": 0.2,
                "paired": {"ood": {"recovered": {"acc": acc_share, "loss": loss_share}}}}

    base = [{"point": "reference", "kind": "baseline", "ood_acc": 0.08, "ood_acc_se": 0.005},
            {"point": "tuned", "kind": "baseline", "ood_acc": 0.03, "ood_acc_se": 0.005}]
    flat = {"estimate": 0.1, "lo": -0.3, "hi": 0.5}
    for loss_share, applies in (({"estimate": 0.8, "lo": 0.6, "hi": 1.0}, True), (flat, False)):
        sweeps = {"ranks": {"rows": base + [point("k=0.2", flat, loss_share)]}}
        row = next(r for r in triage({"sweeps": sweeps}) if r["symptom"] == "OOD lost after full SFT")
        assert row["applies"] is applies
        assert "95% CI -30% to 50%, paired" in row["evidence"] and "lost OOD loss proxy" in row["evidence"]


def test_heal_window_names_the_starts_rl_healed_from():
    """Starts in SFT-step order; a start heals when its paired OOD accuracy interval lies above 0
    (or its OOD loss interval below 0)."""
    from spindoctor.report.triage import heal_window, triage

    def done(acc_lo, loss_hi):
        return {"paired": {"ood": {"acc": {"estimate": acc_lo + 0.01, "lo": acc_lo, "hi": acc_lo + 0.02},
                                   "loss": {"estimate": loss_hi - 0.01, "lo": loss_hi - 0.02, "hi": loss_hi}}}}

    sft = [{"step": s, "id_acc": 0.2, "ood_acc": 0.05, "ood_acc_se": 0.01} for s in (35, 100, 200)]
    rl_point = [{"step": 60, "id_acc": 0.25, "ood_acc": 0.06, "ood_acc_se": 0.01}]
    data = {"selection": {"peak": {"step": 35}, "middle": {"step": 100}, "end": {"step": 200}}, "sft": sft,
            "rl": {"peak": rl_point, "step-100": rl_point, "end": rl_point},
            "rl_done": {"peak": done(0.01, -0.01), "step-100": done(0.005, 0.02), "end": done(-0.02, 0.03)}}
    assert heal_window(data) == {"starts": [35, 100, 200], "acc": [35, 100], "loss": [35]}
    rl_row = next(r for r in triage(data) if r["symptom"] == "RL restores too little")
    assert "Heal window over 3 starts (SFT steps 35, 100, 200)" in rl_row["evidence"]
