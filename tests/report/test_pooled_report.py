"""The pooled report over synthetic seed run folders: each seed's findings come from its own files,
the pooled table follows the rule of docs/design.md, "Evidence", and every file is written."""

from __future__ import annotations

import csv
import json

import pytest

from spindoctor.report.pooled_report import build_pooled_report


def write_seed(run, ood_drop: float, se: float) -> None:
    """A seed folder holding only select's paired evidence (end vs peak on OOD) and a marker."""
    (run / "sft").mkdir(parents=True)
    (run / ".stages").mkdir()
    (run / "config.yaml").write_text("name: organism\n")
    (run / ".stages" / "sft.json").write_text(json.dumps({"seconds": 12.0, "finished": "x"}))
    diff = {"estimate": ood_drop, "lo": ood_drop - 2 * se, "hi": ood_drop + 2 * se, "se": se, "n": 400}
    (run / "sft" / "selection.json").write_text(json.dumps({
        "peak": {"step": 20}, "middle": {"step": 200}, "end": {"step": 400}, "shape": "peak then decline",
        "paired": {"end_vs_peak": {"ood": {"acc": diff}}}}))


@pytest.fixture
def seeds(tmp_path):
    dirs = {}
    for seed, drop in ((0, -0.02), (1, -0.04), (2, -0.06)):
        dirs[seed] = tmp_path / f"seed-{seed}"
        write_seed(dirs[seed], drop, se=0.015)
    return tmp_path, dirs


def test_the_pooled_report_pools_each_seeds_findings(seeds):
    parent, dirs = seeds
    result = build_pooled_report(parent, dirs, "organism")
    head = result["pooled"][1]
    assert head["measure"].startswith("OOD accuracy, SFT end - OOD peak")
    between = 0.02 / 3**0.5  # the seeds' drops (-2, -4, -6 pp) differ more than each seed's hands are noisy
    assert head["estimate"] == pytest.approx(-0.04) and head["k"] == 3
    assert (head["lo"], head["hi"]) == (pytest.approx(-0.04 - 4.302653 * between), pytest.approx(-0.04 + 4.302653 * between))
    assert head["verdict"] == "inconclusive"  # -4.0 pp [-9.0, +1.0]: three seeds of this spread do not decide it
    assert head["seed_verdicts"] == "2/3 reproduced, 1/3 inconclusive"  # seed 0: -2 pp [-5, +1]
    rows = list(csv.DictReader((parent / "report" / "tables" / "findings_pooled.csv").open()))
    assert {r["finding"] for r in rows} == {"1", "2", "3", "4", "5", "6"}
    first = rows[0]
    assert first["spread_min"] == "-0.06" and first["spread_max"] == "-0.02" and first["seeds"] == "0,1,2"
    for seed in dirs:
        per = list(csv.DictReader((parent / "report" / "tables" / f"findings_seed-{seed}.csv").open()))
        assert per[0]["se"] == "0.015" and per[0]["measure"] == first["measure"]
    summary = (parent / "report" / "summary.md").read_text()
    assert summary.index("## Findings pooled over seeds") < summary.index("## Seed 0") < summary.index("## Seed 2")
    assert "-4.0 pp [-9.0, +1.0]" in summary and "-6.0 pp to -2.0 pp" in summary
    html = (parent / "report" / "index.html").read_text()
    assert 'href="../seed-2/report/index.html"' in html and "2/3 reproduced, 1/3 inconclusive" in html


def test_a_seed_without_evidence_is_pooled_as_not_measured(seeds):
    parent, dirs = seeds
    (dirs[2] / "sft" / "selection.json").unlink()
    head = build_pooled_report(parent, dirs, "organism")["pooled"][1]
    assert head["k"] == 2 and head["estimate"] == pytest.approx(-0.03)
    assert head["seed_verdicts"] == "1/3 reproduced, 1/3 inconclusive, 1/3 not measured"


def test_no_seeds_still_writes_a_report(tmp_path):
    result = build_pooled_report(tmp_path, {}, "organism")
    assert result["seeds"] == [] and result["pooled"] == {}
    assert "No seed has findings yet" in (tmp_path / "report" / "index.html").read_text()


def test_markdown_cells_escape_pipes(seeds):
    parent, dirs = seeds
    build_pooled_report(parent, dirs, "organism")
    summary = (parent / "report" / "summary.md").read_text()
    assert "\\|ds/s\\|" in summary and "| |ds" not in summary
