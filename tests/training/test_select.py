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
