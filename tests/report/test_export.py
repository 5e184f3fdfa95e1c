"""Exporting a built report for a repository: small files, provenance, one set, foreign folders refused."""

from __future__ import annotations

import json

import pytest

from spindoctor.cli import main
from spindoctor.errors import UserError
from spindoctor.report.export import export_report


@pytest.fixture
def built_run(tmp_path):
    run = tmp_path / "run"
    (run / "report" / "tables").mkdir(parents=True)
    (run / "report" / "figures").mkdir()
    (run / "report" / "summary.md").write_text("# spindoctor study: organism\n")
    (run / "report" / "index.html").write_text("<html>" + "x" * 5000)
    (run / "report" / "tables" / "findings.csv").write_text("finding,verdict\n1,reproduced\n")
    (run / "report" / "figures" / "sft_curves.png").write_bytes(b"\x89PNG curves")
    (run / "arena").mkdir()
    (run / "arena" / "arena.png").write_bytes(b"\x89PNG arena")
    (run / ".stages").mkdir()
    (run / ".stages" / "sft.json").write_text(json.dumps({"seconds": 312.3}))
    (run / "config.yaml").write_text("name: organism\nseed: 0\n")
    return run


def test_export_copies_the_small_files_with_provenance(built_run, tmp_path):
    dest = tmp_path / "docs" / "results" / "organism"
    info = export_report(built_run, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "arena.png", "config.yaml", "export.json",
                                                      "findings.csv", "sft_curves.png", "summary.md"]
    assert info["files"] == sorted(p.name for p in dest.iterdir() if p.name != "export.json")
    assert not list(dest.rglob("*.html"))
    assert info["command"] == f"spindoctor study --config organism --out {built_run}"
    assert info["stage_seconds"] == {"sft": 312.3} and info["machine"]["cores"] >= 1
    readme = (dest / "README.md").read_text()
    assert "spindoctor study --config organism" in readme and "sft 312" in readme
    (built_run / "arena" / "arena.png").unlink()
    export_report(built_run, dest)  # a previous export is replaced whole: no stale figure stays
    assert not (dest / "arena.png").exists()


@pytest.mark.parametrize("kind", ["user-folder", "a-file"], ids=["user-folder", "a-file"])
def test_export_refuses_what_it_did_not_write(built_run, tmp_path, kind):
    dest = tmp_path / "dest"
    if kind == "a-file":
        dest.write_text("mine")
    else:
        dest.mkdir()
        (dest / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="export folder"):
        export_report(built_run, dest)
    assert (dest.read_text() if kind == "a-file" else (dest / "notes.txt").read_text()) == "mine"


def test_export_needs_a_built_report(built_run, tmp_path, capsys):
    (tmp_path / "bare").mkdir()
    with pytest.raises(UserError, match="no built report"):
        export_report(tmp_path / "bare", tmp_path / "out")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    assert main(["report", str(tmp_path / "bare"), "--export", str(tmp_path / "taken")]) == 2
    assert "not a previous export" in capsys.readouterr().err
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "export.json").write_text(json.dumps({"files": ["summary.md"]}))
    (fake / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a previous export"):  # a marker does not license other files
        export_report(built_run, fake)
