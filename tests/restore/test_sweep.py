"""In-memory sweeps: patching is undone bitwise, points are right, the end-to-end sweep writes its table."""

import json

import pytest
import torch

from spindoctor.cli import main
from spindoctor.probes import ProbeConfig
from spindoctor.restore.plan import RestorePlan, plan_matrices
from spindoctor.restore.run import SweepConfig, run_sweep, sweep_points
from spindoctor.restore.sweep import load_factors, patched, point_edits, recovered_share
from spindoctor.spectral.tensors import Checkpoint

TINY_PROBE = ProbeConfig(n=6, max_new_tokens=6, batch_size=16)


def factors_of(ref, tuned):
    infos = plan_matrices(Checkpoint(ref), Checkpoint(tuned), RestorePlan())
    return load_factors(ref, tuned, infos, progress=False)


def test_patched_restores_parameters_bitwise_even_on_error(tiny_pair):
    from spindoctor.models.load import load_causal_lm

    ref, tuned = tiny_pair
    model, _ = load_causal_lm(tuned)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    edits = point_edits(factors_of(ref, tuned), {0, 1}, 1.0)
    name = next(iter(edits))
    with pytest.raises(RuntimeError, match="boom"), patched(model, edits):
        assert not torch.equal(dict(model.named_parameters())[name], before[name])
        raise RuntimeError("boom")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_point_edits_select_layers_and_skip_k_zero(tiny_pair):
    factors = factors_of(*tiny_pair)
    assert point_edits(factors, None, 0) == {}
    edits = point_edits(factors, {2}, 0.5)
    assert edits and all(".layers.2." in name for name in edits)
    assert len(point_edits(factors, None, 1)) == len(factors)


def test_patched_model_equals_the_written_checkpoint(tiny_pair, tmp_path):
    """The in-memory edit and `spindoctor restore` produce the same weights."""
    from safetensors.torch import load_file

    from spindoctor.models.load import load_causal_lm
    from spindoctor.restore.checkpoint import restore_checkpoint

    ref, tuned = tiny_pair
    restore_checkpoint(ref, tuned, tmp_path / "out", RestorePlan(layers="1-2", k_top=0.25), progress=False)
    written = load_file(tmp_path / "out" / "model.safetensors")
    model, _ = load_causal_lm(tuned)
    with patched(model, point_edits(factors_of(ref, tuned), {1, 2}, 0.25)):
        params = dict(model.named_parameters())
        for name, w in written.items():
            torch.testing.assert_close(params[name].detach(), w, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("point", "tuned", "ref", "share"), [
    (0.3, 0.1, 0.5, 0.5), (0.1, 0.1, 0.5, 0.0), (0.5, 0.1, 0.5, 1.0), (0.0, 0.1, 0.5, -0.25), (0.3, 0.5, 0.5, None),
], ids=["half", "none", "all", "worse", "nothing-lost"])
def test_recovered_share(point, tuned, ref, share):
    got = recovered_share(point, tuned, ref)
    assert got == share if share is None else got == pytest.approx(share)


def test_sweep_points_by_kind():
    base = {"ref": "a", "tuned": "b"}
    assert [p[0] for p in sweep_points(SweepConfig(kind="layers", blocks=2, **base), 4)] == ["layers 0-1", "layers 2-3"]
    assert [p[0] for p in sweep_points(SweepConfig(kind="impose", block_size=3, **base), 4)] == \
        ["all layers", "layers 0-2", "layers 3"]
    assert [p[2] for p in sweep_points(SweepConfig(kind="ranks", ks=[0, 0.5, 8], **base), 4)] == [0, 0.5, 8]


def test_layer_sweep_end_to_end(tiny_pair, tmp_path):
    ref, tuned = tiny_pair
    cfg = SweepConfig(kind="layers", ref=str(ref), tuned=str(tuned), blocks=2, probe=TINY_PROBE)
    record = run_sweep(cfg, tmp_path / "sw", progress=False)
    points = [r["point"] for r in record["rows"]]
    assert points == ["reference", "tuned", "layers 0-1", "layers 2-3"]
    assert all(r["n_matrices"] == 14 for r in record["rows"][2:])
    saved = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert saved["config"]["probe"]["n"] == 6
    assert (tmp_path / "sw" / "sweep.csv").read_text().splitlines()[0].startswith("point,kind,layers")
    assert (tmp_path / "sw" / "sweep.png").stat().st_size > 1000


@pytest.mark.parametrize("args", [
    ["sweep", "layers", "/nonexistent/ref", "/nonexistent/tuned", "--out", "x"],
    ["restore", "/nonexistent/ref", "/nonexistent/tuned", "--out", "x"],
], ids=["sweep-missing", "restore-missing"])
def test_cli_bad_input_exits_2(args, capsys):
    assert main(args) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_rejects_bad_plan(tiny_pair, tmp_path, capsys):
    ref, tuned = tiny_pair
    assert main(["restore", str(ref), str(tuned), "--out", str(tmp_path / "o"), "--layers", "7-9"]) == 2
    assert main(["restore", str(ref), str(tuned), "--out", str(tmp_path / "o"), "--mode", "sideways"]) == 2
    assert main(["restore", str(ref), str(tuned), "--out", str(tmp_path / "o"), "--top-k", "150%"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error:") for line in err)


def test_full_restoration_point_pairs_as_the_reference(tiny_pair, tmp_path):
    """k = all, full triplet gives the reference back: paired against it every hand agrees, and its
    change against the tuned model is the reference's own (same hands, same bits)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref, _ = tiny_pair
    model = AutoModelForCausalLM.from_pretrained(ref)
    with torch.no_grad():  # only the linear matrices move, so restoring them all is the reference
        for name, p in model.named_parameters():
            if name.endswith("proj.weight"):
                p.add_(0.2 * torch.randn_like(p))
    tuned = tmp_path / "linear-only"
    model.save_pretrained(tuned)
    AutoTokenizer.from_pretrained(ref).save_pretrained(tuned)
    cfg = SweepConfig(kind="ranks", ref=str(ref), tuned=str(tuned), ks=[1.0], mode="full", probe=TINY_PROBE)
    record = run_sweep(cfg, tmp_path / "sw", progress=False)
    base_ref, base_tuned, point = record["rows"]
    for split in ("id", "ood"):
        ev = point["paired"][split]
        assert point["per_hand"][split]["correct"] == base_ref["per_hand"][split]["correct"]
        assert ev["vs_ref"]["acc"]["estimate"] == 0 and ev["vs_ref"]["acc"]["discordant"] == [0, 0]
        assert ev["vs_ref"]["loss"]["estimate"] == pytest.approx(0, abs=1e-4)
        ref_loss = sum(base_ref["per_hand"][split]["loss"]) / 6
        tuned_loss = sum(base_tuned["per_hand"][split]["loss"]) / 6
        assert ev["vs_tuned"]["loss"]["estimate"] == pytest.approx(ref_loss - tuned_loss, abs=1e-4)
        assert point[f"{split}_loss_vs_tuned_est"] == ev["vs_tuned"]["loss"]["estimate"]
    header = (tmp_path / "sw" / "sweep.csv").read_text().splitlines()[0].split(",")
    assert "ood_loss_recovered_lo" in header and "id_acc_vs_tuned_hi" in header
