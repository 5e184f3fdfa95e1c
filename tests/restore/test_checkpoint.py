"""Restored checkpoints: complete, loadable by transformers, and the identities hold on disk."""

import json

import pytest
import torch
from safetensors.torch import load_file

from spindoctor.errors import UserError
from spindoctor.restore.checkpoint import restore_checkpoint
from spindoctor.restore.plan import RestorePlan

from .conftest import make_pair


def weights(folder):
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_restored_checkpoint_loads_and_generates(tiny_pair, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref, tuned = tiny_pair
    record = restore_checkpoint(ref, tuned, tmp_path / "out", RestorePlan(layers="0-1", k_top=0.5), progress=False)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    ids = tok("R10 5 5 =24:", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4
    saved = json.loads((tmp_path / "out" / "restore.json").read_text())
    assert saved["plan"]["layers"] == "0-1" and saved["reference"].endswith("ref")
    assert {row["layer"] for row in record["matrices"]} == {0, 1}
    assert len(record["matrices"]) == 2 * 7  # q k v o gate up down per layer
    assert all(row["k_top"] == 16 for row in record["matrices"] if row["rank"] == 32)


def test_k_zero_writes_the_tuned_weights_bitwise(tiny_pair, tmp_path):
    ref, tuned = tiny_pair
    restore_checkpoint(ref, tuned, tmp_path / "out", RestorePlan(k_top=0), progress=False)
    got, want = weights(tmp_path / "out"), weights(tuned)
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_full_restore_of_everything_gives_the_reference(tiny_pair, tmp_path):
    ref, tuned = tiny_pair
    plan = RestorePlan(layers="all", matrices="all", embeddings=True, k_top=1.0, mode="full")
    restore_checkpoint(ref, tuned, tmp_path / "out", plan, dtype="float64", progress=False)
    got, want, tuned_w = weights(tmp_path / "out"), weights(ref), weights(tuned)
    for name, w in want.items():
        if w.ndim == 2:
            torch.testing.assert_close(got[name], w, rtol=0, atol=1e-5)
        else:  # norms are not matrices: they stay tuned
            assert torch.equal(got[name], tuned_w[name])


def test_sharded_checkpoint_keeps_its_layout(tmp_path):
    ref, tuned = make_pair(tmp_path, shard=True)
    restore_checkpoint(ref, tuned, tmp_path / "out", RestorePlan(k_top=2), progress=False)
    assert (tmp_path / "out" / "model.safetensors.index.json").exists()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.safetensors")) == \
        sorted(p.name for p in tuned.glob("*.safetensors"))


def test_nonempty_out_is_refused_and_nothing_is_left_behind(tiny_pair, tmp_path):
    ref, tuned = tiny_pair
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(UserError, match="not a restore output"):
        restore_checkpoint(ref, tuned, tmp_path / "busy", RestorePlan(), progress=False)
    with pytest.raises(UserError, match="no matrix"):
        restore_checkpoint(ref, tuned, tmp_path / "o2", RestorePlan(layers="none"), progress=False)
    assert not (tmp_path / "o2").exists() and not list(tmp_path.glob(".*"))
