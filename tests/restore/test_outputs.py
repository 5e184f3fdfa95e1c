"""Restore and sweep outputs are one set: refused unless replaceable, built under a unique
temporary name, replaced whole or not at all; sweep options that select nothing are refused."""

from __future__ import annotations

import json
import os

import pytest
from pydantic import ValidationError

from spindoctor.cli import main
from spindoctor.errors import UserError
from spindoctor.restore import checkpoint as restore_mod
from spindoctor.restore.checkpoint import EDIT_RECORD, restore_checkpoint
from spindoctor.restore.plan import RestorePlan
from spindoctor.restore.run import SweepConfig


def _one_line_exit_2(capsys, argv) -> str:
    capsys.readouterr()  # the fixtures' save messages
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def _snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def _out_case(case, tmp_path, ref, tuned, monkeypatch):
    """The --out of each refused case, after setting it up."""
    if case == "file":
        (tmp_path / "file").write_text("mine")
        return tmp_path / "file"
    if case == "foreign-folder":
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes" / "todo.txt").write_text("mine")
        return tmp_path / "notes"
    if case == "working-folder":
        monkeypatch.chdir(tmp_path / "work")
        return tmp_path / "work"
    return {"input-folder": tuned, "parent-of-input": tmp_path, "ref-folder": ref}[case]


OUT_CASES = ["file", "foreign-folder", "working-folder", "input-folder", "ref-folder", "parent-of-input"]


@pytest.mark.parametrize("case", OUT_CASES, ids=OUT_CASES)
def test_restore_refuses_an_out_it_may_not_replace(capsys, tiny_pair, tmp_path, monkeypatch, case):
    ref, tuned = tiny_pair
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "keep.txt").write_text("mine")
    out = _out_case(case, tmp_path, ref, tuned, monkeypatch)
    before = _snapshot(tmp_path)
    _one_line_exit_2(capsys, ["restore", str(ref), str(tuned), "--out", str(out)])
    assert _snapshot(tmp_path) == before


def test_restore_out_dot_is_refused(capsys, tiny_pair, tmp_path, monkeypatch):
    ref, tuned = tiny_pair
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    assert "working folder" in _one_line_exit_2(capsys, ["restore", str(ref), str(tuned), "--out", "."])
    assert _snapshot(tmp_path) == before


def test_a_previous_restore_output_is_replaced_whole(tiny_pair, tmp_path):
    ref, tuned = tiny_pair
    out = tmp_path / "out"
    first = restore_checkpoint(ref, tuned, out, RestorePlan(k_top=0.5), progress=False)
    second = restore_checkpoint(ref, tuned, out, RestorePlan(k_top=1), progress=False)
    record = json.loads((out / EDIT_RECORD).read_text())
    assert record["plan"]["k_top"] == 1 and first["plan"]["k_top"] == 0.5
    assert sorted(p.name for p in out.iterdir()) == second["files"] == record["files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "ref", "tuned"]  # no temporary folder left


def test_an_output_of_an_older_version_is_recognised_by_restore_json(tiny_pair, tmp_path):
    ref, tuned = tiny_pair
    out = tmp_path / "out"
    restore_checkpoint(ref, tuned, out, RestorePlan(), progress=False)
    record = json.loads((out / EDIT_RECORD).read_text())
    del record["files"]  # older restore.json: no file list, every plain file is the output's
    (out / EDIT_RECORD).write_text(json.dumps(record))
    restore_checkpoint(ref, tuned, out, RestorePlan(k_top=3), progress=False)
    assert json.loads((out / EDIT_RECORD).read_text())["plan"]["k_top"] == 3


def test_a_file_added_to_a_previous_output_blocks_the_replacement(tiny_pair, tmp_path):
    ref, tuned = tiny_pair
    out = tmp_path / "out"
    restore_checkpoint(ref, tuned, out, RestorePlan(), progress=False)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="did not write"):
        restore_checkpoint(ref, tuned, out, RestorePlan(), progress=False)
    assert (out / "notes.txt").read_text() == "mine" and (out / EDIT_RECORD).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "ref", "tuned"]


def test_a_failed_restore_leaves_the_previous_output_and_no_temporary(tiny_pair, tmp_path, monkeypatch):
    ref, tuned = tiny_pair
    out = tmp_path / "out"
    restore_checkpoint(ref, tuned, out, RestorePlan(), progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(restore_mod, "_restore_one", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        restore_checkpoint(ref, tuned, out, RestorePlan(k_top=2), progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "ref", "tuned"]


def test_temporary_names_are_unique_and_a_lookalike_folder_is_never_touched(tiny_pair, tmp_path, monkeypatch):
    """The old fixed name ``.out.partial`` is someone else's folder now; two runs get two temporaries."""
    ref, tuned = tiny_pair
    (tmp_path / ".out.partial").mkdir()
    (tmp_path / ".out.partial" / "keep.txt").write_text("mine")
    seen = []
    real = restore_mod._write_weights

    def spy(tmp, *args, **kwargs):
        seen.append(tmp)
        return real(tmp, *args, **kwargs)

    monkeypatch.setattr(restore_mod, "_write_weights", spy)
    restore_checkpoint(ref, tuned, tmp_path / "out", RestorePlan(), progress=False)
    restore_checkpoint(ref, tuned, tmp_path / "out", RestorePlan(), progress=False)
    assert len(set(seen)) == 2 and all(t.parent == tmp_path and t.name.startswith(".out.") for t in seen)
    assert (tmp_path / ".out.partial" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.partial", "out", "ref", "tuned"]


def test_restore_output_replaced_through_a_symlinked_parent(tiny_pair, tmp_path):
    ref, tuned = tiny_pair
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    restore_checkpoint(ref, tuned, tmp_path / "link" / "out", RestorePlan(), progress=False)
    assert (tmp_path / "real" / "out" / EDIT_RECORD).is_file()


# ---------------------------------------------------------------- sweep options and outputs
SWEEP_ARGS = {
    "blocks-zero": ["layers", "--blocks", "0"],
    "block-size-zero": ["layers", "--block-size", "0"],
    "blocks-negative": ["impose", "--blocks", "-2"],
    "ks-empty": ["ranks", "--ks", ""],
    "ks-only-commas": ["ranks", "--ks", ",,"],
    "ks-fraction-above-one": ["ranks", "--ks", "1.5"],
}


@pytest.mark.parametrize("args", list(SWEEP_ARGS.values()), ids=list(SWEEP_ARGS))
def test_sweep_options_that_select_nothing_are_refused(capsys, tiny_pair, tmp_path, args):
    ref, tuned = tiny_pair
    kind, *rest = args
    _one_line_exit_2(capsys, ["sweep", kind, str(ref), str(tuned), "--out", str(tmp_path / "sw"), *rest])
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("fields", [{"blocks": 0}, {"block_size": 0}, {"ks": []}, {"ks": [5.0]}, {"k_top": -1}],
                         ids=["blocks-zero", "block-size-zero", "ks-empty", "ks-fraction-5", "k-top-negative"])
def test_sweep_config_refuses_them_in_the_python_api(fields):
    with pytest.raises(ValidationError):
        SweepConfig(kind="ranks", ref="a", tuned="b", **fields)


@pytest.mark.parametrize("case", ["file", "foreign-folder"], ids=["file", "foreign-folder"])
def test_sweep_refuses_an_out_it_may_not_replace(capsys, tiny_pair, tmp_path, monkeypatch, case):
    ref, tuned = tiny_pair
    (tmp_path / "work").mkdir()
    out = _out_case(case, tmp_path, ref, tuned, monkeypatch)
    before = _snapshot(tmp_path)
    _one_line_exit_2(capsys, ["sweep", "ranks", str(ref), str(tuned), "--out", str(out), "--ks", "1"])
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["restore", "sweep"])
def test_a_cache_dir_that_is_a_file_is_refused(capsys, tiny_pair, tmp_path, command):
    ref, tuned = tiny_pair
    (tmp_path / "cache").write_text("mine")
    head = ["restore"] if command == "restore" else ["sweep", "ranks"]
    err = _one_line_exit_2(capsys, [*head, str(ref), str(tuned), "--out", str(tmp_path / "o"),
                                    "--cache-dir", str(tmp_path / "cache")])
    assert "--cache-dir" in err and not (tmp_path / "o").exists() and (tmp_path / "cache").read_text() == "mine"
