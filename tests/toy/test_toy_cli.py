"""`spindoctor toy rotation`: bad options exit 2 with one line and write nothing; defaults come from
ToyConfig; the output folder is replaced as a set and nothing else is deleted."""

import json

import pytest

from spindoctor.cli import main
from spindoctor.errors import UserError
from spindoctor.toy.run import ToyConfig, run_toy


def call(capsys, *args):
    code = main(["toy", "rotation", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def snapshot(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "args, needle",
    [(["--shift", "nan"], "--shift"), (["--shift", "inf"], "--shift"), (["--shift", "-0.1"], "--shift"),
     (["--shift", "2"], "--shift"), (["--seed", "-1"], "--seed"), (["--seed", "x"], "--seed")],
    ids=["shift-nan", "shift-inf", "shift-negative", "shift-above-1", "seed-negative", "seed-not-a-number"],
)
def test_bad_option_exits_2_and_writes_nothing(args, needle, tmp_path, capsys):
    code, _, err = call(capsys, "--out", tmp_path / "toy", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert list(tmp_path.iterdir()) == []


def user_file(path):
    path.write_text("mine")


def user_folder(path):
    path.mkdir()
    (path / "notes.txt").write_text("mine")


@pytest.mark.parametrize("make, needle", [(user_file, "not a folder"), (user_folder, "files other than")],
                         ids=["out-is-a-file", "out-holds-user-files"])
def test_out_that_may_not_be_replaced_exits_2(make, needle, tmp_path, capsys):
    out = tmp_path / "toy"
    make(out)
    before = snapshot(tmp_path)
    code, _, err = call(capsys, "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err and "--out" in err, err
    assert snapshot(tmp_path) == before


def test_defaults_come_from_toy_config(tmp_path, capsys):
    assert call(capsys, "--out", tmp_path / "toy", "--json")[0] == 0
    assert json.loads((tmp_path / "toy" / "toy.json").read_text())["config"] == ToyConfig().model_dump()


def test_rerun_replaces_the_set(tmp_path):
    first = run_toy(tmp_path / "toy", seed=1)
    second = run_toy(tmp_path / "toy", seed=2)
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == ["toy.json", "toy.png"]
    assert json.loads((tmp_path / "toy" / "toy.json").read_text())["config"]["seed"] == 2
    assert first["fine_tune"] != second["fine_tune"] and sorted(p.name for p in tmp_path.iterdir()) == ["toy"]


@pytest.mark.parametrize("overrides", [{"shift": float("nan")}, {"seed": -1}, {"bogus": 1}],
                         ids=["shift-nan", "seed-negative", "unknown-option"])
def test_library_errors_name_the_parameter(overrides, tmp_path):
    with pytest.raises(UserError) as info:
        run_toy(tmp_path / "toy", **overrides)
    assert next(iter(overrides)) in str(info.value) and "--" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
