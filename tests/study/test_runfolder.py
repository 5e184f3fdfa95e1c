"""The study's run folder: only a study run is written into, only the study's files are deleted,
and a changed config reruns exactly the stages whose settings (or inputs) changed.

The stages are replaced by fakes (conftest.py ``calls``) that write one file into each
of their folders, so these tests exercise the pipeline's bookkeeping in milliseconds.
"""

import json
import warnings

import pytest

from spindoctor.cli import main
from spindoctor.errors import UserError
from spindoctor.study import pipeline
from spindoctor.study.config import load_study_config
from spindoctor.study.fingerprint import UPSTREAM, stage_fingerprints
from spindoctor.study.runfolder import STAGE_DIRS, STUDY_MARKER, StudyNotice, marker, started
from spindoctor.study.stages import STAGES

from .tree import tree, write_tree

NAMES = [name for name, _ in STAGES]


@pytest.fixture(scope="module")
def cfg():
    return load_study_config("organism", quick=True)


def _run(cfg, run, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StudyNotice)
        pipeline.run_study(cfg, run, progress=False, **kw)
    return [str(w.message) for w in caught if issubclass(w.category, StudyNotice)]


def test_stage_tables_agree():
    assert list(UPSTREAM) == NAMES and list(STAGE_DIRS) == NAMES


FOREIGN = {
    "user-file": {"notes.txt": "mine"},
    "user-sft-run": {"sft/config.yaml": "steps: 3", "sft/metrics.jsonl": "{}"},
    "config-without-stages": {"config.yaml": "name: organism"},
    "not-a-study-marker": {STUDY_MARKER: '{"schema": "something-else"}', "base/model.safetensors": "x"},
}


@pytest.mark.parametrize("restart", [False, True], ids=["resume", "restart"])
@pytest.mark.parametrize("files", FOREIGN.values(), ids=FOREIGN.keys())
def test_a_folder_that_is_not_a_study_run_is_refused_and_left_intact(tmp_path, calls, cfg, files, restart):
    write_tree(tmp_path, files)
    before = tree(tmp_path)
    with pytest.raises(UserError, match="not a study run|not a study run marker"):
        pipeline.run_study(cfg, tmp_path, progress=False, restart=restart)
    assert calls == []
    assert tree(tmp_path) == before
    assert all((tmp_path / rel).read_text() == text for rel, text in files.items())


@pytest.mark.parametrize("restart", [[], ["--restart"]], ids=["resume", "restart"])
def test_cli_refuses_a_foreign_out_with_exit_2_and_one_line(tmp_path, calls, capsys, restart):
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "mine.txt").write_text("keep me")
    code = main(["study", "--quick", "--out", str(tmp_path), "--json", *restart])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a study run folder" in err[0]
    assert (tmp_path / "sft" / "mine.txt").read_text() == "keep me" and calls == []


def test_an_empty_folder_becomes_a_study_run(tmp_path, calls, cfg):
    _run(cfg, tmp_path)
    assert calls == NAMES
    assert json.loads((tmp_path / STUDY_MARKER).read_text())["schema"].startswith("spindoctor.study-run/")
    assert all(json.loads(marker(tmp_path, n).read_text())["fingerprint"] for n in NAMES)


def test_restart_removes_only_what_the_study_wrote(tmp_path, calls, cfg):
    _run(cfg, tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".cache").mkdir(exist_ok=True)
    (tmp_path / ".cache" / "other.bin").write_text("mine")
    (tmp_path / ".cache" / "svd").mkdir(parents=True, exist_ok=True)
    (tmp_path / ".cache" / "svd" / "entry").write_text("study")
    (tmp_path / "drift" / "stale.png").write_text("old")
    (tmp_path / ".config.yaml.abc.tmp").write_text("half")
    calls.clear()
    notices = _run(cfg, tmp_path, restart=True)
    assert calls == NAMES
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / ".cache" / "other.bin").exists()
    assert not (tmp_path / ".cache" / "svd").exists() and not (tmp_path / "drift" / "stale.png").exists()
    assert not (tmp_path / ".config.yaml.abc.tmp").exists()
    assert any("kept" in n and "notes.txt" in n and ".cache" in n for n in notices)


def test_a_stage_folder_the_study_did_not_start_is_refused(tmp_path, calls, cfg):
    _run(cfg, tmp_path)
    for path in (marker(tmp_path, "rl"), started(tmp_path, "rl")):
        path.unlink()
    (tmp_path / "rl" / "mine.txt").write_text("keep")
    calls.clear()
    for restart in (False, True):
        with pytest.raises(UserError, match="was not written by this study"):
            pipeline.run_study(cfg, tmp_path, progress=False, restart=restart)
    assert calls == [] and (tmp_path / "rl" / "mine.txt").read_text() == "keep"
    assert (tmp_path / "sft" / "sft.out").exists()  # nothing deleted by the refused restart


def _change(cfg, **update):
    data = cfg.model_dump(mode="json")
    for dotted, value in update.items():
        *path, last = dotted.split("__")
        node = data
        for key in path:
            node = node[key]
        node[last] = value
    return type(cfg).model_validate(data)


CHANGES = {
    "nothing": ({}, []),
    "threads-only": ({"threads": 1}, []),
    "drift-k": ({"drift__k": [0.5]}, ["drift", "report"]),
    "sweeps-reference": ({"sweeps__reference": "base"}, ["sweeps", "arena", "report"]),
    "arena-tolerance": ({"arena": {"id_tolerance": 0.05}}, ["arena", "report"]),
    "select-z": ({"select__overrides": {"z": 2.5}}, ["select", "rl", "drift", "sweeps", "arena", "report"]),
    "sft-steps": ({"sft__overrides__steps": 10}, ["sft", "select", "rl", "drift", "sweeps", "arena", "report"]),
    "seed": ({"seed": 1}, NAMES),
}


@pytest.mark.parametrize(("update", "rerun"), CHANGES.values(), ids=CHANGES.keys())
def test_a_changed_setting_reruns_its_stage_and_what_depends_on_it(tmp_path, calls, cfg, update, rerun):
    _run(cfg, tmp_path)
    calls.clear()
    notices = _run(_change(cfg, **update), tmp_path)
    assert calls == rerun
    assert sorted(n.split(":")[0] for n in notices) == sorted(rerun)


def test_an_interrupted_stage_resumes_or_starts_over(tmp_path, calls, cfg, monkeypatch):
    stages = dict(pipeline.STAGES)

    def broken(ctx):
        """Dies half-way."""
        (ctx.run / "rl").mkdir()
        (ctx.run / "rl" / "checkpoint-1").write_text("half")
        raise RuntimeError("killed")

    monkeypatch.setattr(pipeline, "STAGES", [(n, broken if n == "rl" else stages[n]) for n in NAMES])
    with pytest.raises(RuntimeError):
        pipeline.run_study(cfg, tmp_path, progress=False)
    monkeypatch.setattr(pipeline, "STAGES", list(stages.items()))
    calls.clear()
    _run(cfg, tmp_path)
    assert calls == ["rl", "drift", "sweeps", "arena", "toy", "report"]
    assert (tmp_path / "rl" / "checkpoint-1").exists()  # same settings: RL resumes in its folder
    (tmp_path / "rl" / "checkpoint-1").write_text("x")
    marker(tmp_path, "rl").unlink()
    calls.clear()
    _run(_change(cfg, rl__overrides={"steps": 3}), tmp_path)
    assert not (tmp_path / "rl" / "checkpoint-1").exists()  # other settings: RL starts over


def _make_legacy(run, saved_cfg=None):
    """What the study wrote before the marker existed: no marker, no started records, no fingerprints."""
    (run / STUDY_MARKER).unlink()
    for path in (run / ".stages" / "started").iterdir():
        path.unlink()
    (run / ".stages" / "started").rmdir()
    for name in NAMES:
        m = json.loads(marker(run, name).read_text())
        m.pop("fingerprint")
        marker(run, name).write_text(json.dumps(m))
    if saved_cfg is not None:
        import yaml

        (run / "config.yaml").write_text(yaml.safe_dump(saved_cfg.model_dump(mode="json")))


def test_a_legacy_run_is_recognised_and_its_markers_trusted_by_its_saved_config(tmp_path, calls, cfg):
    _run(cfg, tmp_path)
    _make_legacy(tmp_path)
    calls.clear()
    assert _run(cfg, tmp_path) == [] and calls == []
    assert (tmp_path / STUDY_MARKER).exists()
    assert json.loads(marker(tmp_path, "drift").read_text())["fingerprint"] == stage_fingerprints(cfg)["drift"]


def test_a_legacy_run_with_another_saved_config_reruns_what_changed(tmp_path, calls, cfg):
    _run(cfg, tmp_path)
    _make_legacy(tmp_path, saved_cfg=_change(cfg, drift__k=[0.5]))
    calls.clear()
    _run(cfg, tmp_path)
    assert calls == ["drift", "report"]


def test_a_legacy_run_restart_keeps_user_files(tmp_path, calls, cfg):
    _run(cfg, tmp_path)
    _make_legacy(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    calls.clear()
    _run(cfg, tmp_path, restart=True)
    assert calls == NAMES and (tmp_path / "notes.txt").read_text() == "mine"


def test_out_that_is_a_file_is_refused_and_a_link_to_a_folder_is_followed(tmp_path, calls, cfg):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(UserError, match="not a folder"):
        pipeline.run_study(cfg, tmp_path / "file", progress=False)
    assert (tmp_path / "file").read_text() == "mine" and calls == []
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    _run(cfg, tmp_path / "link")
    _run(cfg, tmp_path / "link", restart=True)
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / STUDY_MARKER).exists()


def test_markers_record_the_torch_thread_count(tmp_path, calls, cfg):
    """Float reductions differ with the thread count the load chose, so each marker says which it was."""
    import torch

    from spindoctor.study.runfolder import marker as marker_path

    _run(cfg, tmp_path)
    saved = json.loads(marker_path(tmp_path, "sft").read_text())
    assert saved["torch_threads"] == torch.get_num_threads()
