"""A malformed checkpoint is one line and exit 2 for every model-loading command, with nothing written.

Each case of :data:`tests.models.malformed.CASES` is given to ``probe``, ``sft --base``,
``rl --from``, ``sweep`` and ``restore``; the checks run before any work, so
the output folder never appears.
"""

from __future__ import annotations

import pytest

from spindoctor.cli import main
from spindoctor.errors import UserError
from spindoctor.models.load import check_model_folder, load_causal_lm

from .malformed import CASES, make_malformed

# restore reads weights and config only: it needs no tokenizer and builds no model
WEIGHT_CASES = [c for c in CASES if c not in ("no-tokenizer", "auto-map-unknown-type")]


@pytest.fixture
def bad(tiny_organism_dir, tmp_path, request):
    return make_malformed(tiny_organism_dir, request.param, tmp_path / "bad" / request.param)


def _one_line_exit_2(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_a_good_folder_passes_and_loads(tiny_organism_dir):
    assert check_model_folder(tiny_organism_dir) == tiny_organism_dir
    model, tokenizer = load_causal_lm(tiny_organism_dir)
    assert tokenizer.pad_token_id is not None and not model.training


@pytest.mark.parametrize("bad", list(CASES), ids=list(CASES), indirect=True)
def test_check_model_folder_refuses(bad):
    with pytest.raises(UserError) as info:
        check_model_folder(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", list(CASES), ids=list(CASES), indirect=True)
def test_probe_refuses(capsys, bad):
    _one_line_exit_2(capsys, ["probe", str(bad)])


@pytest.mark.parametrize("bad", list(CASES), ids=list(CASES), indirect=True)
def test_sft_base_refuses_before_writing(capsys, tmp_path, bad):
    _one_line_exit_2(capsys, ["sft", "--base", str(bad), "--out", str(tmp_path / "sft")])
    assert not (tmp_path / "sft").exists()


@pytest.mark.parametrize("bad", list(CASES), ids=list(CASES), indirect=True)
def test_rl_from_refuses_before_writing(capsys, tmp_path, bad):
    _one_line_exit_2(capsys, ["rl", "--from", str(bad), "--out", str(tmp_path / "rl"), "--preset", "organism"])
    assert not (tmp_path / "rl").exists()


@pytest.mark.parametrize("bad", list(CASES), ids=list(CASES), indirect=True)
def test_sweep_refuses_before_writing(capsys, tiny_organism_dir, tmp_path, bad):
    _one_line_exit_2(capsys, ["sweep", "ranks", str(tiny_organism_dir), str(bad), "--out", str(tmp_path / "sw")])
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("bad", WEIGHT_CASES, ids=WEIGHT_CASES, indirect=True)
@pytest.mark.parametrize("side", ["ref", "tuned"])
def test_restore_refuses_before_writing(capsys, tiny_organism_dir, tmp_path, bad, side):
    ref, tuned = (bad, tiny_organism_dir) if side == "ref" else (tiny_organism_dir, bad)
    _one_line_exit_2(capsys, ["restore", str(ref), str(tuned), "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("device", ["cuda:7", "cuda:x", "tpu"], ids=["absent-cuda-index", "bad-index", "unknown"])
def test_probe_absent_device_is_one_line(capsys, tiny_organism_dir, device, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = _one_line_exit_2(capsys, ["probe", str(tiny_organism_dir), "--device", device])
    assert "--device" in err


def test_sft_out_that_is_a_file_is_refused(capsys, tiny_organism_dir, tmp_path):
    (tmp_path / "file").write_text("mine")
    _one_line_exit_2(capsys, ["sft", "--base", str(tiny_organism_dir), "--out", str(tmp_path / "file")])
    assert (tmp_path / "file").read_text() == "mine"
