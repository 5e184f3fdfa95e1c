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
