"""The findings table: every finding gets a row and a verdict by the one rule, from the stages' files."""

from __future__ import annotations

import pytest

from spindoctor.report.build import findings_markdown, fmt_stat
from spindoctor.report.findings import finding_verdicts, findings_table


def diff(est, lo, hi, se=0.01, n=500):
    return {"estimate": est, "lo": lo, "hi": hi, "se": se, "n": n}


def full_data() -> dict:
    """A run whose every stage left its evidence: one verdict of each kind appears."""
    return {
        "selection": {"shape": "peak then decline", "paired": {
            "end_vs_peak": {"ood": {"acc": diff(-0.05, -0.07, -0.03), "loss": diff(0.16, 0.14, 0.18)},
                            "id": {"acc": diff(0.18, 0.15, 0.21)}},
            "peak_vs_base": {"ood": {"acc": diff(0.06, 0.04, 0.08)}}}},
        "rl_done": {"end": {"paired": {"id": {"reward": diff(0.5, 0.3, 0.7)},
                                       "ood": {"acc": diff(0.004, -0.01, 0.018, se=0.007), "loss": diff(0.02, 0.01, 0.03)}}}},
        "null": {"pair": "base -> sft-end", "summary": {"overall": {
            "gaussian_ds_rel_mean_abs": {"mean": -0.67, "lo": -0.84, "hi": -0.48, "ratio": 0.51, "n": 16},
            "spectrum_ds_rel_mean_abs": {"mean": -0.55, "lo": -0.7, "hi": -0.38, "ratio": 0.57, "n": 16},
            "gaussian_angle_topk_deg": {"mean": -0.12, "lo": -0.22, "hi": -0.001, "ratio": 0.89, "n": 16},
            "gaussian_rot_share": {"mean": -0.01, "lo": -0.014, "hi": -0.007, "ratio": 0.99, "n": 16}}}},
        "sweeps": {
            "ranks": {"rows": [{"point": "tuned", "kind": "baseline"},
                               {"point": "k=0.1", "kind": "ranks", "k_top": 0.1, "paired": {}},
                               {"point": "k=0.2", "kind": "ranks", "k_top": 0.2, "paired": {"ood": {"recovered": {
                                   "acc": {"estimate": 0.9, "lo": 0.3, "hi": 1.5}, "loss": {"estimate": 0.8, "lo": 0.7, "hi": 0.9}}}}}]},
            "impose": {"rows": [{"point": "all layers", "kind": "impose", "paired": {"ood": {"vs_tuned": {
                "acc": diff(-0.01, -0.03, 0.01), "loss": diff(0.05, 0.03, 0.07)}}}}]},
        },
        "toy": {"gauge_identity": {"product_rel_error": 1e-16, "sv_max_rel_change_A": 2e-16,
                                   "mean_angle_right_vectors_A_deg": 11.5}},
    }


def test_every_finding_gets_a_headline_verdict():
    rows = findings_table(full_data())
    heads = finding_verdicts(rows)
    assert list(heads) == [1, 2, 3, 4, 5, 6]
    assert heads[1]["verdict"] == "reproduced" and heads[1]["measure"].startswith("OOD accuracy, SFT end")
    assert heads[2]["verdict"] == "inconclusive" and heads[2]["measure"].startswith("RL from SFT end: OOD accuracy")
    assert "paired hands would resolve it" in heads[2]["resolve"]
    assert heads[3]["verdict"] == "reproduced"  # values move less than a random update of the same norm
    assert heads[4]["verdict"] == "reproduced" and "k=0.2" in heads[4]["measure"]
    assert heads[5]["verdict"] == "inconclusive"
    assert heads[6]["verdict"] == "reproduced"


@pytest.mark.parametrize(
    "measure,verdict",
    [("mean log(top-25% principal angle", "contradicted"), ("RL from SFT end: OOD loss", "contradicted"),
     ("OOD loss proxy, SFT directions", "reproduced"), ("RL from SFT end: ID reward", "reproduced")],
    ids=["angles-below-null", "rl-loss-rose", "impose-loss", "rl-learns"],
)
def test_rows_follow_the_predicted_direction(measure, verdict):
    rows = [r for r in findings_table(full_data()) if r["measure"].startswith(measure)]
    assert rows and rows[0]["verdict"] == verdict


def test_an_empty_run_is_inconclusive_everywhere_and_says_why():
    rows = findings_table({})
    assert {r["verdict"] for r in rows} == {"inconclusive"}
    assert all(r["resolve"] for r in rows)
    assert set(finding_verdicts(rows)) == {1, 2, 3, 4, 5, 6}


def test_markdown_and_formatting():
    rows = findings_table(full_data())
    text = "\n".join(findings_markdown(rows))
    assert text.count("**reproduced**") >= 3 and "| 6 |" in text
    assert fmt_stat({"estimate": -0.05, "lo": -0.07, "hi": -0.03, "unit": "fraction"}) == "-5.0 pp [-7.0, -3.0]"
    assert fmt_stat({"estimate": 0.8, "lo": 0.7, "hi": 0.9, "unit": "share"}) == "+80% [+70, +90]"
    assert fmt_stat({"estimate": None, "lo": None, "hi": None, "unit": "share"}) == "n/a"
