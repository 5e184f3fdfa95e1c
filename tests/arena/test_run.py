"""run_arena on a tiny model: outputs, evidence, bad inputs."""

import json

import pytest
from tests.arena.conftest import TINY_PROBE

from spindoctor.arena.config import ArenaConfig
from spindoctor.arena.run import resolve_sources, run_arena
from spindoctor.errors import UserError


def _cfg(base, sft, **kw):
    peak, end = resolve_sources(str(sft), None, None)
    return ArenaConfig(base=str(base), end=end, peak=peak, sft_run=str(sft), probe=TINY_PROBE, **kw)


@pytest.fixture(scope="module")
def arena(sft_run, tmp_path_factory):
    base, sft = sft_run
    out = tmp_path_factory.mktemp("out") / "arena"
    cfg = _cfg(base, sft, grids={"wise-ft": [0.0, 0.5, 1.0], "ckpt-interp": [0.5], "soup": [0, 1],
                                 "dg-threshold": [1.0], "keep-top-r": [1.0], "restore": [0.5]})
    return run_arena(cfg, out, progress=False), out


def test_outputs_and_rows(arena):
    record, out = arena
    assert sorted(p.name for p in out.iterdir()) == ["arena.csv", "arena.json", "arena.png"]
    assert json.loads((out / "arena.json").read_text())["schema"] == "spindoctor.arena/1"
    labels = [r["label"] for r in record["rows"]]
    assert labels[:3] == ["sft end", "base", "sft peak"]
    assert {r["method"] for r in record["rows"]} == {"baseline", "wise-ft", "ckpt-interp", "soup", "dg-threshold",
                                                      "keep-top-r", "restore"}
    assert len(record["sft_curve"]) == 3 and any(r["pareto"] for r in record["rows"])
    header = (out / "arena.csv").read_text().splitlines()[0]
    assert "ood_acc_recovered_est" in header and "id_cost_hi" in header


def test_identities_show_in_the_probes(arena):
    rows = {r["label"]: r for r in arena[0]["rows"]}
    for label, same in (("wise-ft 0", "base"), ("wise-ft 1", "sft end"), ("keep-top-r 1", "sft end"),
                        ("soup 1 ckpts", "sft peak")):
        for split in ("id", "ood"):
            assert rows[label]["probes"][split]["per_hand"] == rows[same]["probes"][split]["per_hand"], label
    end = rows["sft end"]
    assert end["ood_acc_vs_end_est"] == 0 and end["id_cost_est"] == 0
    assert rows["wise-ft 0.5"]["seconds"] > 0 and rows["wise-ft 0.5"]["paired"]["ood"]["recovered"]["acc"] is not None


def test_bad_inputs_are_refused_before_work(sft_run, tmp_path):
    base, sft = sft_run
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an arena output"):
        run_arena(_cfg(base, sft), tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        _cfg(base, sft, methods=["magic"])
    with pytest.raises(ValueError, match="bad grid value 2"):
        _cfg(base, sft, grids={"wise-ft": [2]})
    with pytest.raises(ValueError, match="soup"):
        ArenaConfig(base=str(base), end=str(base), methods=["soup"])


def test_mismatched_architectures(sft_run, tmp_path):
    from tests.restore.conftest import make_pair

    base, sft = sft_run
    other, _ = make_pair(tmp_path, n_layers=3)
    with pytest.raises(UserError, match="mismatched architectures"):
        run_arena(_cfg(other, sft), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_reference_peak(sft_run, tmp_path):
    base, sft = sft_run
    record = run_arena(_cfg(base, sft, methods=["wise-ft"], grids={"wise-ft": [0.5]}, reference="peak"),
                       tmp_path / "a", progress=False)
    peak = next(r for r in record["rows"] if r["label"] == "sft peak")
    assert peak["paired"]["ood"]["recovered"]["loss"]["estimate"] == pytest.approx(1.0)
    assert record["config"]["reference"] == "peak"
    with pytest.raises(ValueError, match="reference peak needs"):
        ArenaConfig(base=str(base), end=str(base), methods=["wise-ft"], reference="peak")


def test_study_restore_and_rl_points(sft_run, tmp_path):
    import shutil

    base, sft = sft_run
    peak, end = resolve_sources(str(sft), None, None)
    study = tmp_path / "study"
    shutil.copytree(peak, study / "rl" / "peak" / "checkpoint-5")
    rows = [{"kind": "layers", "point": p, "layers": p, "k_top": 1.0, "mode": "direction", "ood_acc": acc, "id_acc": 0.1}
            for p, acc in (("layers 0", 0.5), ("layers 1", 0.2))]
    (study / "restore" / "layers").mkdir(parents=True)
    (study / "restore" / "layers" / "sweep.json").write_text(json.dumps(
        {"config": {"ref": peak, "tuned": end, "kind": "layers"}, "rows": [{"kind": "baseline"}, *rows]}))
    cfg = _cfg(base, sft, methods=["restore", "rl"], grids={"restore": [0.5]}, study=str(study))
    record = run_arena(cfg, tmp_path / "a", progress=False)
    by = {r["label"]: r for r in record["rows"]}
    assert list(by)[3:] == ["restore k=0.5", "restore layers 0 (ref peak)", "rl from peak"]
    assert by["rl from peak"]["probes"]["ood"]["per_hand"] == by["sft peak"]["probes"]["ood"]["per_hand"]
    assert by["restore layers 0 (ref peak)"]["knob"] == "layers: layers 0"


def test_rl_rows_carry_training_seconds(sft_run, tmp_path):
    import shutil

    base, sft = sft_run
    peak, _ = resolve_sources(str(sft), None, None)
    run = tmp_path / "study" / "rl" / "peak"
    shutil.copytree(peak, run / "checkpoint-5")
    (run / "train.jsonl").write_text('{"step": 1, "seconds": 1.5}\n{"step": 2, "seconds": 2.0}\n')
    record = run_arena(_cfg(base, sft, methods=["rl"], study=str(tmp_path / "study")), tmp_path / "a", progress=False)
    row = record["rows"][-1]
    assert row["label"] == "rl from peak" and row["train_seconds"] == 3.5 and row["edit_seconds"] >= 0
    assert "train_seconds" in (tmp_path / "a" / "arena.csv").read_text().splitlines()[0]


def test_soup_members_window(sft_run):
    from spindoctor.arena.points import soup_members

    _, sft = sft_run
    names = lambda ms: [m.rsplit("-", 1)[-1] for m in ms]  # noqa: E731
    assert names(soup_members(str(sft), str(sft / "checkpoint-2"), 0)) == ["2"]
    assert names(soup_members(str(sft), str(sft / "checkpoint-2"), 1)) == ["1", "2", "3"]
    assert names(soup_members(str(sft), str(sft / "checkpoint-1"), 5)) == ["1", "2", "3"]
    assert soup_members(str(sft), "/elsewhere/checkpoint-9", 2) == ["/elsewhere/checkpoint-9"]


def test_selection_whose_peak_is_the_end(tmp_path):
    ckpt = tmp_path / "checkpoint-7"
    ckpt.mkdir()
    (tmp_path / "selection.json").write_text(json.dumps({"peak": {"step": 7, "path": str(ckpt)},
                                                         "end": {"step": 7, "path": str(ckpt)}}))
    assert resolve_sources(str(tmp_path), None, None) == (str(ckpt), str(ckpt))


def _write_probe_json(ckpt, row: dict, probe) -> None:
    """``ckpt/probe.json`` as SFT saves it: the rows of its probe, the probe config and the dtype."""
    rows = [{"stage": "sft", "step": 1, "time": 0.0, **split_row} for split_row in row["probes"].values()]
    (ckpt / "probe.json").write_text(json.dumps({"step": 1, "rows": rows, "probe_config": probe.model_dump(mode="json"),
                                                 "model_dtype": "torch.float32"}))


@pytest.mark.parametrize("saved_n, reused", [(TINY_PROBE.n, True), (TINY_PROBE.n + 1, False)],
                         ids=["same-probe-reused", "other-probe-probed-again"])
def test_baselines_reuse_their_checkpoints_probe_rows_only_when_the_probe_matches(tmp_path, saved_n, reused):
    from tests.arena.conftest import make_sft_run

    base, sft = make_sft_run(tmp_path / "run")
    kw = {"methods": ["wise-ft"], "grids": {"wise-ft": [0.5]}}
    fresh = {r["label"]: r for r in run_arena(_cfg(base, sft, **kw), tmp_path / "a", progress=False)["rows"]}
    saved_probe = TINY_PROBE.model_copy(update={"n": saved_n})
    for label, step in (("sft end", 3), ("sft peak", 1)):
        _write_probe_json(sft / f"checkpoint-{step}", fresh[label], saved_probe)
    again = {r["label"]: r for r in run_arena(_cfg(base, sft, **kw), tmp_path / "b", progress=False)["rows"]}
    for label, step in (("sft end", 3), ("sft peak", 1)):
        assert ("reused_from" in again[label]) is reused
        if reused:
            assert again[label]["reused_from"] == str(sft / f"checkpoint-{step}" / "probe.json")
        for split in ("id", "ood"):  # a reused row is the probe's own numbers, hand by hand
            drop = ("seconds",)
            assert {k: v for k, v in again[label]["probes"][split].items() if k not in drop} == \
                   {k: v for k, v in fresh[label]["probes"][split].items() if k not in drop}
    assert "reused_from" not in again["base"] and "reused_from" not in again["wise-ft 0.5"]
    assert again["wise-ft 0.5"]["ood_acc_vs_end_est"] == fresh["wise-ft 0.5"]["ood_acc_vs_end_est"]
