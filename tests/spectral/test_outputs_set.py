"""Drift's output folder is replaced whole or not at all, and only drift's own files are ever deleted."""

import json

import pytest

from spindoctor.errors import UserError
from spindoctor.io import atomic_dir
from spindoctor.spectral import drift
from spindoctor.spectral.outputs import DATA_FILES, FIGURE_FILES

from .test_checkpoints import run, save_pair, tiny_model


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    a, b = save_pair(tiny_model("llama"), tmp_path_factory.mktemp("llama"))
    return drift(a, b, cache_dir=None)


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def siblings(folder):
    """Everything beside ``folder`` in its parent (temporary folders would show up here)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


def test_rerun_without_figures_leaves_no_old_figure(result, tmp_path):
    out = tmp_path / "out"
    result.save(out)
    assert names(out) == sorted(DATA_FILES + FIGURE_FILES)
    paths = result.save(out, figures=False)
    assert names(out) == sorted(DATA_FILES) == sorted(p.name for p in paths)
    assert siblings(out) == []


def test_cli_rerun_with_no_figures_replaces_the_set(tmp_path, capsys):
    a, b = save_pair(tiny_model("llama"), tmp_path / "pair")
    out = tmp_path / "runs" / "o"
    assert run(capsys, "drift", a, b, "--out", out, "--no-cache")[0] == 0
    assert set(FIGURE_FILES) <= set(names(out))
    code, _, err = run(capsys, "drift", a, b, "--out", out, "--no-cache", "--no-figures", "--k", "0.5")
    assert code == 0, err
    assert names(out) == sorted(DATA_FILES) and siblings(out) == []
    assert json.loads((out / "metrics.json").read_text())["config"]["k"] == [0.5]


def test_empty_existing_folder_is_used(result, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result.save(out, figures=False)
    assert names(out) == sorted(DATA_FILES)


@pytest.mark.parametrize("stage", ["data", "figures"], ids=["fails-writing-data", "fails-drawing-figures"])
def test_a_failed_write_leaves_the_previous_output_and_no_temp(stage, result, tmp_path, monkeypatch):
    import spindoctor.spectral.outputs as outputs

    out = tmp_path / "out"
    result.save(out, figures=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(outputs, "_write_data" if stage == "data" else "write_figures", boom)
    with pytest.raises(RuntimeError, match="boom"):
        result.save(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert siblings(out) == []


def test_a_failed_first_write_leaves_no_folder(result, tmp_path, monkeypatch):
    import spindoctor.spectral.outputs as outputs

    monkeypatch.setattr(outputs, "write_figures", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        result.save(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "extra",
    ["notes.txt", "sub/"],
    ids=["user-file", "user-subfolder"],
)
def test_previous_output_with_foreign_files_is_refused_and_kept(extra, result, tmp_path):
    out = tmp_path / "out"
    result.save(out, figures=False)
    target = out / extra.rstrip("/")
    target.mkdir() if extra.endswith("/") else target.write_text("mine")
    before = names(out)
    with pytest.raises(UserError, match="not a drift output folder"):
        result.save(out)
    assert names(out) == before and target.exists() and siblings(out) == []


def test_bad_figure_pattern_is_refused_before_anything_is_written(result, tmp_path):
    with pytest.raises(UserError, match="regular expression"):
        result.save(tmp_path / "out", figure_matrices=["("])
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_temp_names_are_unique_and_removed(tmp_path):
    seen = []
    for _ in range(2):
        with pytest.raises(KeyError), atomic_dir(tmp_path / "x", owned=("a",)) as tmp:
            seen.append(tmp)
            assert tmp.parent == tmp_path and tmp.name.startswith(".x.")
            raise KeyError
    with atomic_dir(tmp_path / "x", owned=("a",)) as tmp:
        seen.append(tmp)
        (tmp / "a").write_text("1")
    assert len(set(seen)) == 3 and names(tmp_path) == ["x"] and names(tmp_path / "x") == ["a"]


def test_atomic_dir_never_deletes_what_it_does_not_own(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "b").write_text("theirs")
    with pytest.raises(FileExistsError), atomic_dir(tmp_path / "x", owned=("a",)) as tmp:
        (tmp / "a").write_text("1")
    assert names(tmp_path) == ["x"] and (tmp_path / "x" / "b").read_text() == "theirs"
