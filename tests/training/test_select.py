"""OOD-peak selection on synthetic curves, and its statistics against independent formulas."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spindoctor.cli import main
from spindoctor.training.select import pooled_smoothing, select_from_curve, wilson_interval


def curve(accs, n=500, steps=None):
    steps = steps or [10 * i for i in range(len(accs))]
    return [{"step": s, "ood_acc": a, "ood_n": n, "id_acc": 0.5, "id_n": n} for s, a in zip(steps, accs, strict=True)]


def test_wilson_matches_float64_formula():
    k, n, z = 37.0, 234.0, 1.959963984540054
    p = k / n
    lo = (p + z**2 / (2 * n) - z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))) / (1 + z**2 / n)
    hi = (p + z**2 / (2 * n) + z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))) / (1 + z**2 / n)
    assert wilson_interval(k, n) == pytest.approx((lo, hi), abs=1e-12)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_pooled_smoothing_edges():
    pk, pn = pooled_smoothing([1, 2, 3, 4], [10, 10, 10, 10], window=3)
    assert pk == [3, 6, 9, 7] and pn == [20, 30, 30, 20]
    assert pooled_smoothing([1, 2], [5, 5], window=1) == ([1, 2], [5, 5])
    with pytest.raises(ValueError):
        pooled_smoothing([1], [1], window=2)


def test_clear_peak():
    accs = [0.02, 0.05, 0.10, 0.13, 0.12, 0.09, 0.07, 0.05, 0.04, 0.04]
    sel = select_from_curve(curve(accs))
    assert sel["shape"] == "peak then decline"
    assert sel["peak"]["step"] == 30
    assert sel["end"]["step"] == 90
    assert 30 <= sel["middle"]["step"] <= 90 and abs(sel["middle"]["step"] - 60) <= 5


def test_flat_line_is_flat_and_picks_earliest():
    sel = select_from_curve(curve([0.05] * 8))
    assert sel["shape"] == "flat"
    assert sel["peak"]["step"] == 0  # ties: earliest
    assert sel["rise_z"] == 0.0 and sel["decline_z"] == 0.0


def test_noisy_monotone_decline():
    rng = np.random.default_rng(0)
    truth = np.linspace(0.20, 0.05, 16)
    accs = [rng.binomial(500, p) / 500 for p in truth]
    sel = select_from_curve(curve(accs))
    assert sel["shape"] == "decline"
    assert sel["peak"]["step"] <= 20  # the peak stays at the start despite noise
    assert sel["decline_z"] > 2


def test_single_spike_is_smoothed_away():
    accs = [0.10, 0.10, 0.10, 0.30, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10]
    accs[3] = 0.16  # one noisy high point beside steady values
    accs[7] = 0.13
    sel = select_from_curve(curve(accs, n=200))
    lo, hi = sel["peak"]["ood_smoothed_ci95"]
    assert lo < sel["peak"]["ood_smoothed"] < hi
    assert sel["shape"] == "flat"


def test_select_cli_writes_selection(tmp_path, capsys):
    accs = [0.02, 0.08, 0.12, 0.11, 0.08, 0.05, 0.04, 0.04]
    rows = []
    for p in curve(accs):
        (tmp_path / f"checkpoint-{p['step']}").mkdir()
        for split, acc in (("id", 0.3), ("ood", p["ood_acc"])):
            rows.append({"stage": "sft", "step": p["step"], "split": split, "n": 500, "acc": acc,
                         "acc_se": math.sqrt(acc * (1 - acc) / 500), "loss": 0.4})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["select", str(tmp_path), "--json"]) == 0
    sel = json.loads((tmp_path / "selection.json").read_text())
    assert sel["peak"]["step"] == 20 and sel["peak"]["path"].endswith("checkpoint-20")
    assert sel["shape"] == "peak then decline"
    assert "Pool" in sel["rule"] or "pool" in sel["rule"]
    assert json.loads(capsys.readouterr().out)["peak"]["step"] == 20


def test_select_cli_bad_folder_exits_2(tmp_path, capsys):
    assert main(["select", str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err


def test_selection_pairs_the_chosen_checkpoints_hand_by_hand(tmp_path):
    """With per-hand records, selection.json holds paired peak/base/end changes that match the bits."""
    from spindoctor.stats import paired_difference
    from spindoctor.training.select import select_run

    rng = np.random.default_rng(0)
    n = 400
    ability = rng.random(n)
    ood_bits = {0: ability < 0.02, 10: ability < 0.10, 20: ability < 0.12, 30: ability < 0.06, 40: ability < 0.03}
    rows = []
    for step, bits in ood_bits.items():
        (tmp_path / f"checkpoint-{step}").mkdir()
        for split, b in (("id", ability < 0.1 + step / 100), ("ood", bits)):
            rows.append({"stage": "sft", "step": step, "split": split, "n": n, "acc": float(b.mean()), "loss": 0.4,
                         "per_hand": {"digest": f"hands-{split}", "correct": "".join("1" if x else "0" for x in b),
                                      "loss": list(0.4 + 0.01 * step + 0 * ability)}})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sel = select_run(tmp_path)
    assert sel["peak"]["step"] in (10, 20) and sel["end"]["step"] == 40
    drop = sel["paired"]["end_vs_peak"]["ood"]
    peak_bits = ood_bits[sel["peak"]["step"]].astype(float)
    want = paired_difference(peak_bits, ood_bits[40].astype(float))
    assert drop["acc"]["estimate"] == pytest.approx(want.estimate) and drop["acc"]["hi"] < 0
    assert drop["acc"]["discordant"][1] == 0  # the end solves a subset of the peak's hands
    assert drop["loss"]["estimate"] == pytest.approx(0.01 * (40 - sel["peak"]["step"]))
    assert set(sel["paired"]) == {"peak_vs_base", "end_vs_peak", "end_vs_base"}
    assert json.loads((tmp_path / "selection.json").read_text())["paired"] == json.loads(json.dumps(sel["paired"]))


def test_selection_without_per_hand_rows_has_no_pairs(tmp_path):
    from spindoctor.training.select import select_run

    rows = [{"stage": "sft", "step": s, "split": "ood", "n": 100, "acc": a} for s, a in ((0, 0.1), (10, 0.2), (20, 0.1))]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert select_run(tmp_path)["paired"] == {}
