"""``spindoctor study --seeds``: one ordinary run folder per seed, a parent marker, the pooled report,
and the run folder's ownership rules for the parent (docs/design.md, "Run folder").

The stages are replaced by fakes (conftest.py ``calls``), so the orchestration runs in milliseconds;
``test_a_real_two_seed_quick_study`` (slow) runs the real quick study twice.
"""

import csv
import json
import warnings

import pytest
import yaml

from spindoctor.cli import main
from spindoctor.errors import UserError
from spindoctor.study import runfolder
from spindoctor.study.config import load_study_config
from spindoctor.study.runfolder import SEEDS_SCHEMA, STUDY_MARKER, StudyNotice, marker
from spindoctor.study.seeds import parse_seeds, pooled_report, run_seeds
from spindoctor.study.stages import STAGES

from .tree import tree, write_tree

NAMES = [name for name, _ in STAGES]


@pytest.fixture(scope="module")
def cfg():
    return load_study_config("organism", quick=True)


def _cli(capsys, *args):
    code = main(["study", "--quick", *args])
    out = capsys.readouterr()
    return code, out.out, out.err.strip().splitlines()


@pytest.mark.parametrize("text", ["0,1,2", "5", " 3, 1 "])
def test_parse_seeds(text):
    assert parse_seeds(text) == [int(t) for t in text.split(",")]


@pytest.mark.parametrize("text", ["", "0,,1", "-1", "1.5", "a", "0,0", "1,2,1", "٣"])
def test_bad_seeds_exit_2_with_one_line_and_write_nothing(tmp_path, calls, capsys, text):
    code, _, err = _cli(capsys, "--seeds", text, "--out", str(tmp_path / "run"), "--json")
    assert code == 2 and len(err) == 1 and "--seeds" in err[0]
    assert calls == [] and not (tmp_path / "run").exists()


def test_each_seed_is_an_ordinary_run_and_the_parent_identifies_itself(tmp_path, calls, capsys):
    code, out, err = _cli(capsys, "--seeds", "0,1", "--out", str(tmp_path), "--json")
    assert code == 0 and calls == NAMES * 2
    summary = json.loads(out)
    assert set(summary["seeds"]) == {"0", "1"} and set(summary["seeds"]["0"]["stages"]) == set(NAMES)
    assert set(summary["pooled"]) == {"1", "2", "3", "4", "5", "6"}
    assert all(v["verdict"] in ("reproduced", "contradicted", "inconclusive") for v in summary["pooled"].values())
    parent = json.loads((tmp_path / STUDY_MARKER).read_text())
    assert parent["schema"] == SEEDS_SCHEMA and parent["seeds"] == [0, 1] and parent["config"] == "organism"
    for seed in (0, 1):
        run = tmp_path / f"seed-{seed}"
        assert json.loads((run / STUDY_MARKER).read_text())["schema"] == runfolder.SCHEMA
        assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == seed
        assert all(marker(run, n).exists() for n in NAMES)
    report = tmp_path / "report"
    for name in ("index.html", "summary.md", "tables/findings_pooled.csv", "tables/findings_seed-0.csv",
                 "tables/findings_seed-1.csv", "tables/stage_times.csv"):
        assert (report / name).exists(), name
    html = (report / "index.html").read_text()
    assert html.index(">Findings pooled over seeds<") < html.index("id=\"seed-0\"") < html.index("id=\"seed-1\"")
    assert 'href="../seed-0/report/index.html"' in html and "sqrt(sum of the seed SE^2)" in html
    assert err == []  # --json: no progress


def test_progress_names_each_seed_and_the_summary_shows_both(tmp_path, calls, capsys):
    code, out, err = _cli(capsys, "--seeds", "3,1", "--out", str(tmp_path))
    assert code == 0 and calls == NAMES * 2
    assert [line for line in err if line.startswith("seed ")] == [f"seed 3 (1 of 2): {tmp_path / 'seed-3'}",
                                                                  f"seed 1 (2 of 2): {tmp_path / 'seed-1'}"]
    assert "seed 3" in out and "seed 1" in out and "findings pooled over seeds" in out


def test_a_rerun_resumes_every_seed_and_a_new_seed_runs_alone(tmp_path, calls, cfg):
    run_seeds(cfg, tmp_path, [0, 1], progress=False)
    calls.clear()
    run_seeds(cfg, tmp_path, [0, 1, 2], progress=False)
    assert calls == NAMES  # seeds 0 and 1 finished: only seed 2 runs
    pooled_report(tmp_path)
    rows = list(csv.DictReader((tmp_path / "report" / "tables" / "stage_times.csv").open()))
    assert sorted({r["seed"] for r in rows}) == ["0", "1", "2"]
    assert json.loads((tmp_path / STUDY_MARKER).read_text())["seed_dirs"] == [0, 1, 2]


FOREIGN = {
    "user-file": {"notes.txt": "mine"},
    "single-seed-run": {STUDY_MARKER: json.dumps({"schema": runfolder.SCHEMA}), "sft/x": "1"},
    "legacy-run": {"config.yaml": "name: organism", ".stages/base.json": "{}"},
}


@pytest.mark.parametrize("restart", [[], ["--restart"]], ids=["resume", "restart"])
@pytest.mark.parametrize("files", FOREIGN.values(), ids=FOREIGN.keys())
def test_a_folder_that_is_not_a_multi_seed_study_is_refused_and_left_intact(tmp_path, calls, capsys, files, restart):
    write_tree(tmp_path, files)
    before = tree(tmp_path)
    code, _, err = _cli(capsys, "--seeds", "0,1", "--out", str(tmp_path), "--json", *restart)
    assert code == 2 and len(err) == 1 and ("not a multi-seed study folder" in err[0] or "single-seed" in err[0])
    assert calls == [] and tree(tmp_path) == before


def test_a_single_run_into_a_multi_seed_folder_is_refused(tmp_path, calls, cfg, capsys):
    run_seeds(cfg, tmp_path, [0], progress=False)
    calls.clear()
    code, _, err = _cli(capsys, "--out", str(tmp_path), "--json")
    assert code == 2 and len(err) == 1 and "multi-seed study folder" in err[0] and calls == []


def test_a_foreign_seed_folder_is_refused_before_any_seed_runs(tmp_path, calls, cfg):
    run_seeds(cfg, tmp_path, [0], progress=False)
    (tmp_path / "seed-1").mkdir()
    (tmp_path / "seed-1" / "mine.txt").write_text("keep")
    calls.clear()
    for restart in (False, True):
        with pytest.raises(UserError, match="not a study run folder"):
            run_seeds(cfg, tmp_path, [0, 1], progress=False, restart=restart)
    assert calls == [] and (tmp_path / "seed-0" / "sft" / "sft.out").exists()


def test_a_foreign_stage_folder_in_a_seed_is_refused_before_restart_deletes_anything(tmp_path, calls, cfg):
    run_seeds(cfg, tmp_path, [0, 1], progress=False)
    seed1 = tmp_path / "seed-1"
    for path in (marker(seed1, "rl"), runfolder.started(seed1, "rl")):
        path.unlink()
    (seed1 / "rl" / "mine.txt").write_text("keep")
    calls.clear()
    with pytest.raises(UserError, match="was not written by this study"):
        run_seeds(cfg, tmp_path, [0, 1], progress=False, restart=True)
    assert calls == [] and (tmp_path / "seed-0" / "sft" / "sft.out").exists()
    assert (tmp_path / "report" / "index.html").exists() is False  # run_seeds alone writes no pooled report


def test_restart_removes_only_what_the_study_wrote(tmp_path, calls, cfg):
    run_seeds(cfg, tmp_path, [0, 1, 2], progress=False)
    pooled_report(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "seed-1" / "mine.txt").write_text("mine")
    calls.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StudyNotice)
        run_seeds(cfg, tmp_path, [0, 1], progress=False, restart=True)
    notices = [str(w.message) for w in caught if issubclass(w.category, StudyNotice)]
    assert calls == NAMES * 2
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "seed-1" / "mine.txt").read_text() == "mine"
    assert not (tmp_path / "seed-2").exists() and not (tmp_path / "report").exists()
    assert any("notes.txt" in n for n in notices) and any("mine.txt" in n for n in notices)
    assert json.loads((tmp_path / STUDY_MARKER).read_text())["seed_dirs"] == [0, 1]


def test_report_command_rebuilds_the_pooled_report(tmp_path, calls, cfg, capsys):
    run_seeds(cfg, tmp_path, [0, 1], progress=False)
    assert main(["report", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["seeds"] == [0, 1] and (tmp_path / "report" / "tables" / "findings_pooled.csv").exists()


@pytest.mark.slow
def test_a_real_two_seed_quick_study(tmp_path, capsys):
    """About 60 s on 2 busy cores: the real stages, stdout holding only the --json summary."""
    code, out, _ = _cli(capsys, "--seeds", "0,1", "--out", str(tmp_path), "--json")
    assert code == 0
    summary = json.loads(out)
    assert set(summary["pooled"]) == {"1", "2", "3", "4", "5", "6"}
    rows = list(csv.DictReader((tmp_path / "report" / "tables" / "findings_pooled.csv").open()))
    pooled = [r for r in rows if r["estimate"] and r["k"] == "2" and r["lo"] and r["hi"]]
    assert len(pooled) >= 8 and {r["finding"] for r in pooled} >= {"1", "2", "3", "5", "6"}
    assert all(float(r["lo"]) <= float(r["estimate"]) <= float(r["hi"]) for r in pooled)
    assert (tmp_path / "seed-0" / "report" / "index.html").exists() and (tmp_path / "seed-1" / "report" / "index.html").exists()
