"""The quick study end to end: every stage, the report, and resuming."""

import json
import shutil
import subprocess

import pytest

from spindoctor.report.build import build_report
from spindoctor.study.config import load_study_config
from spindoctor.study.pipeline import marker, run_study
from spindoctor.study.runfolder import STUDY_MARKER, StudyNotice
from spindoctor.study.stages import STAGES

STAGE_NAMES = [name for name, _ in STAGES]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("study") / "quick"
    markers = run_study(load_study_config("organism", quick=True), run, progress=False)
    return run, markers


def test_every_stage_finishes_and_leaves_its_outputs(quick_run):
    run, markers = quick_run
    assert list(markers) == STAGE_NAMES
    for path in ["config.yaml", STUDY_MARKER, "base/model.safetensors", "sft/metrics.jsonl", "sft/selection.json",
                 "rl/peak/metrics.jsonl", "rl/end/metrics.jsonl", "drift/base__sft-end/metrics.json",
                 "drift/sft-end__rl-end/per_matrix.csv", "restore/layers/sweep.csv", "restore/ranks/sweep.json",
                 "restore/impose/sweep.png", "toy/toy.png", "report/index.html", "report/summary.md",
                 "report/tables/figure1.csv"]:
        assert (run / path).exists(), path


def test_report_shows_every_section_with_numbers(quick_run):
    run, _ = quick_run
    html = (run / "report" / "index.html").read_text()
    for section in ["Triage", "Figure 1", "Figure 2", "Figures 3-4", "Figure 5", "Figure 6", "Figure 7",
                    "RL recoverability", "rotation toy", "Glossary", "Limits", "Published"]:
        assert section in html, section
    assert html.count("data:image/png;base64,") >= 8  # self-contained figures
    figure1 = (run / "report" / "tables" / "figure1.csv").read_text().splitlines()
    assert figure1[0].startswith("model,") and any("RL from SFT end" in line for line in figure1)


def test_rerun_skips_finished_stages(quick_run):
    run, markers = quick_run
    again = run_study(load_study_config("organism", quick=True), run, progress=False)
    assert again == markers


def test_a_missing_marker_reruns_that_stage_and_the_report(quick_run):
    run, markers = quick_run
    marker(run, "toy").unlink()
    shutil.rmtree(run / "toy")
    with pytest.warns(StudyNotice, match="report: finished earlier, rerun because its input stage toy reruns"):
        again = run_study(load_study_config("organism", quick=True), run, progress=False)
    assert (run / "toy" / "toy.png").exists()
    assert again["toy"]["finished"] >= markers["toy"]["finished"]
    assert all(again[s] == markers[s] for s in STAGE_NAMES if s not in ("toy", "report"))


def test_a_changed_drift_setting_reruns_drift_and_report_only(quick_run):
    run, markers = quick_run
    before = {s: json.loads(marker(run, s).read_text()) for s in STAGE_NAMES}
    (run / "drift" / "base__sft-end" / "stale.png").write_bytes(b"old")
    cfg = load_study_config("organism", quick=True)
    cfg = cfg.model_copy(update={"drift": {**cfg.drift, "k": [0.5, 1.0]}})
    with pytest.warns(StudyNotice) as notices:
        again = run_study(cfg, run, progress=False)
    assert [str(n.message) for n in notices] == ["drift: finished earlier, rerun because its settings changed",
                                                 "report: finished earlier, rerun because its input stage drift reruns"]
    assert {s for s in STAGE_NAMES if again[s] != before[s]} == {"drift", "report"}
    assert not (run / "drift" / "base__sft-end" / "stale.png").exists()
    assert json.loads((run / "drift" / "base__sft-end" / "metrics.json").read_text())


def test_report_command_rebuilds(quick_run):
    run, _ = quick_run
    result = build_report(run)
    assert json.dumps(result) and (run / "report" / "index.html").stat().st_size > 10_000


def test_report_gives_every_finding_a_verdict_from_the_stages_evidence(quick_run):
    """The quick study leaves paired evidence in every stage; the findings table reads all of it."""
    import csv

    run, _ = quick_run
    build_report(run)
    null = json.loads((run / "drift" / "null.json").read_text())
    assert null["pair"] == "base -> sft-end" and null["rows"] and null["summary"]["overall"]
    assert json.loads((run / "sft" / "selection.json").read_text())["paired"]
    assert all(json.loads((d / "done.json").read_text())["paired"] for d in (run / "rl").iterdir())
    rows = list(csv.DictReader((run / "report" / "tables" / "findings.csv").open()))
    assert {r["finding"] for r in rows} == {"1", "2", "3", "4", "5", "6"}
    assert {r["verdict"] for r in rows} <= {"reproduced", "contradicted", "inconclusive"}
    measured = [r for r in rows if r["finding"] in ("1", "2", "3", "5") and r["estimate"]]
    assert len(measured) >= 8  # the selection, RL, null and impose rows all carry numbers
    summary = (run / "report" / "summary.md").read_text()
    assert summary.index("## Findings") < summary.index("## Figure 1")
    # the arena stage scored its points on the study's probes; the report shows them and triages on them
    arena = json.loads((run / "arena" / "arena.json").read_text())
    assert {r["method"] for r in arena["rows"]} >= {"wise-ft", "ckpt-interp", "rl"}
    # its SFT baselines are the SFT stage's own probes of those checkpoints, not new ones
    reused = {r["label"]: r.get("reused_from", "") for r in arena["rows"] if r["method"] == "baseline"}
    assert reused["sft end"].endswith("probe.json") and reused["sft peak"].endswith("probe.json")
    html = (run / "report" / "index.html").read_text()
    assert 'id="arena"' in html and "cheapest fix" in summary
    assert (run / "report" / "tables" / "arena.csv").read_text().startswith("method,")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_report_renders_in_headless_chromium(quick_run, tmp_path):
    run, _ = quick_run
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'u'}",
                    "--window-size=1100,3000", f"--screenshot={shot}", (run / "report" / "index.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000
